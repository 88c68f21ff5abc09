"""The data-parallel layer: the one file that knows about pmap, device placement and processes.

Global batches [B, ...] are split as [D, B / D, ...] over D devices; parameters and optimizer
state are replicated. Moving to `jax.shard_map` later touches only this file.

Several processes (hosts): `initialize` joins JAX's multi-process runtime. The training step is
then pmapped over every device of every process (its psums reduce across processes); each
process feeds only its own block of each global batch to its local devices. Evaluation and
inference need no cross-process traffic while they run: each process takes a contiguous block
of the users (`process_block`) on its local devices, and `gather_blocks` reassembles the
blocks, in order, on every process.
"""
import collections
import os
import itertools
import logging
from typing import Callable, Iterable, Iterator, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bert4rec_jax.errors import ConfigError

AXIS = "batch"


def initialize(dist_config) -> None:
  """Joins a multi-process run before any other JAX call (config.distributed).

  coordinator_address set: explicit (num_processes and process_id are required); auto: JAX's
  cluster detection (SLURM, Open MPI, Cloud TPU, ...); otherwise one process, nothing to do.
  """
  if dist_config.coordinator_address:
    if dist_config.num_processes < 1 or not 0 <= dist_config.process_id < dist_config.num_processes:
      raise ConfigError(
          f"config.distributed.coordinator_address={dist_config.coordinator_address!r} needs "
          f"num_processes >= 1 and 0 <= process_id < num_processes (got {dist_config.num_processes}, "
          f"{dist_config.process_id})")
    kwargs = dict(coordinator_address=dist_config.coordinator_address, num_processes=dist_config.num_processes,
                  process_id=dist_config.process_id)
    if dist_config.coordinator_bind_address:
      kwargs["coordinator_bind_address"] = dist_config.coordinator_bind_address
    if dist_config.local_device_ids:
      kwargs["local_device_ids"] = [int(i) for i in str(dist_config.local_device_ids).split(",")]
    jax.distributed.initialize(**kwargs)
  elif dist_config.auto:
    jax.distributed.initialize()  # cluster auto-detection
  else:
    return
  logging.info("Process %d of %d: %d local device(s), %d in all", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def process_count() -> int:
  return jax.process_count()


def is_primary() -> bool:
  """The process that writes shared files (results, W&B, the model folder)."""
  return jax.process_index() == 0


def host_device_flags(devices: int, flags: str = "") -> str:
  """XLA_FLAGS for a child process with `devices` host (CPU) devices: `flags` (e.g. the caller's
  XLA_FLAGS) with any host device count replaced, every other flag kept."""
  kept = [f for f in flags.split() if "xla_force_host_platform_device_count" not in f]
  return " ".join(kept + [f"--xla_force_host_platform_device_count={devices}"])


def describe_cpu(cpuinfo: str = "/proc/cpuinfo") -> str:
  """The host CPU's model and widest vector unit, e.g. "AMD EPYC, AVX2" ("" where Linux's
  /proc/cpuinfo cannot be read): a CPU's step time depends on them (AVX-512 roughly halves it)."""
  try:
    with open(cpuinfo) as f:
      info = f.read(1 << 16)
  except OSError:
    return ""
  fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
  fields = {k.strip(): v.strip() for k, v in fields.items()}
  flags = set(fields.get("flags", fields.get("Features", "")).split())
  vector = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("asimd", "NEON"))
                 if flag in flags), "")
  return ", ".join(x for x in (fields.get("model name", ""), vector) if x)


def describe_devices(devices: Sequence = ()) -> str:
  """The accelerators in use (`devices`, this process's, default all), for reports: e.g.
  "1 x NVIDIA H100 80GB HBM3 (16 CPU cores)", "1 x cpu (2 CPU cores: AMD EPYC, AVX2)"; with
  several processes, the global count."""
  d = step_devices(devices) if len(devices) else jax.devices()
  procs = f", {jax.process_count()} processes" if jax.process_count() > 1 else ""
  cpu = describe_cpu() if d[0].platform == "cpu" else ""
  return f"{len(d)} x {d[0].device_kind} ({os.cpu_count()} CPU cores{': ' + cpu if cpu else ''}{procs})"


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def any_process(*flags: bool) -> tuple:
  """Each flag, true on every process when it is true on any (one small host all-gather)."""
  local = np.asarray(flags, dtype=bool)
  if jax.process_count() > 1:
    local = np.asarray(multihost_utils.process_allgather(local)).reshape(-1, len(flags)).any(axis=0)
  return tuple(bool(x) for x in local)


def _block_bounds(n: int, count: int) -> np.ndarray:
  return np.array([i * n // count for i in range(count + 1)])


def process_block(n: int) -> slice:
  """This process's contiguous block of range(n) (blocks differ in size by at most one)."""
  bounds = _block_bounds(n, jax.process_count())
  return slice(int(bounds[jax.process_index()]), int(bounds[jax.process_index() + 1]))


def gather_blocks(local: np.ndarray, n: int) -> np.ndarray:
  """The blocks of all processes (each its `process_block(n)` rows of `local`), concatenated in
  process order: [n, ...] on every process."""
  count = jax.process_count()
  if count == 1:
    return local
  bounds = _block_bounds(n, count)
  width = int(np.diff(bounds).max())
  padded = np.zeros((width,) + local.shape[1:], local.dtype)
  padded[:len(local)] = local
  everything = np.asarray(multihost_utils.process_allgather(padded))  # [P, width, ...]
  return np.concatenate([everything[i, :bounds[i + 1] - bounds[i]] for i in range(count)])


def local_devices(num_devices: int = 0) -> list:
  """The first `num_devices` local devices (0 = all; with several processes, all are used)."""
  devices = jax.local_devices()
  if num_devices < 0 or num_devices > len(devices):
    raise ConfigError(f"config.train.num_devices={num_devices}, but {len(devices)} local device(s) exist")
  if num_devices and num_devices != len(devices) and jax.process_count() > 1:
    raise ConfigError(f"config.train.num_devices={num_devices}: with {jax.process_count()} processes every "
                      "local device is used (leave it at 0)")
  return devices[:num_devices] if num_devices else devices


def step_devices(devices: Sequence) -> list:
  """What the training step is pmapped over: `devices`, or every process's devices when there
  are several processes (its collectives then span them all)."""
  return jax.devices() if jax.process_count() > 1 else list(devices)


def global_device_count(devices: Sequence) -> int:
  """Devices sharing one global training batch."""
  return len(step_devices(devices))


def batch_block(batch_size: int) -> slice:
  """This process's rows of a global training batch: the rows of its local devices."""
  per_process = batch_size // jax.process_count()
  return slice(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)


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
  """The copy on this process's first device, fetched to host (read from that device's buffer:
  no computation, so with several processes no collective is started by one process alone)."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_shards[0].data).reshape(x.shape[1:]), tree)


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
