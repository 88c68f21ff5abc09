"""The data-parallel layer: the one file that knows about pmap and device placement.

Global batches [B, ...] are split as [D, B / D, ...] over D local devices; parameters and
optimizer state are replicated. Moving to `jax.shard_map` later touches only this file.
"""
import collections
import itertools
from typing import Callable, Iterable, Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bert4rec_jax.errors import ConfigError

AXIS = "batch"


def local_devices(num_devices: int = 0) -> list:
  """The first `num_devices` local devices (0 = all)."""
  devices = jax.local_devices()
  if num_devices < 0 or num_devices > len(devices):
    raise ConfigError(f"config.train.num_devices={num_devices}, but {len(devices)} local device(s) exist")
  return devices[:num_devices] if num_devices else devices


def check_divisible(batch_size: int, num_devices: int, field: str) -> None:
  if batch_size % num_devices:
    raise ConfigError(f"{field}={batch_size} is not divisible by the {num_devices} devices in use; "
                      f"use a multiple of {num_devices}")


def pmap(fn: Callable, devices: Sequence, donate_argnums=(), static_broadcasted_argnums=()) -> Callable:
  """jax.pmap over `devices`; static arguments are Python values the step is compiled for."""
  return jax.pmap(fn, axis_name=AXIS, devices=devices, donate_argnums=donate_argnums,
                  static_broadcasted_argnums=static_broadcasted_argnums)


def _stacked_sharding(devices: Sequence) -> NamedSharding:
  """Leading axis of size D laid out one slice per device: what pmap expects."""
  return NamedSharding(Mesh(np.asarray(devices), (AXIS,)), PartitionSpec(AXIS))


def replicate(tree, devices: Sequence):
  """A copy of every leaf on every device: [D, ...]."""
  sharding = _stacked_sharding(devices)
  return jax.tree.map(
      lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (len(devices),) + np.shape(x)), sharding), tree)


def put_sharded(tree, devices: Sequence):
  """Host batch [B, ...] -> device arrays [D, B / D, ...], one slice per device."""
  sharding = _stacked_sharding(devices)
  return jax.tree.map(lambda x: jax.device_put(x, sharding), shard(tree, len(devices)))


def unreplicate(tree):
  """The copy on the first device, fetched to host."""
  return jax.device_get(jax.tree.map(lambda x: x[0], tree))


def shard(tree, num_devices: int):
  """[B, ...] -> [D, B / D, ...] for every NumPy leaf."""
  return jax.tree.map(lambda x: x.reshape((num_devices, -1) + x.shape[1:]), tree)


def unshard(x):
  """[D, B / D, ...] -> [B, ...] on host."""
  x = np.asarray(jax.device_get(x))
  return x.reshape((-1,) + x.shape[2:])


def prefetch_to_device(items: Iterable[tuple], devices: Sequence, size: int = 2) -> Iterator[tuple]:
  """(host batch, extra) pairs -> (device batch, extra), `size` of them staged ahead of use."""
  queue = collections.deque()
  it = iter(items)
  for batch, extra in itertools.islice(it, size):
    queue.append((put_sharded(batch, devices), extra))
  while queue:
    yield queue.popleft()
    for batch, extra in itertools.islice(it, 1):
      queue.append((put_sharded(batch, devices), extra))


def psum(x):
  return jax.lax.psum(x, AXIS)


def axis_index():
  return jax.lax.axis_index(AXIS)
