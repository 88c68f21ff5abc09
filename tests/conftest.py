"""Test session setup: 4 virtual CPU devices for pmap, and nothing written outside tmp."""
import atexit
import os
import shutil
import sys
import tempfile

# Must happen before JAX is imported anywhere: 4 host devices exercise pmap on a CPU machine.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
# The 4 virtual devices are threads of one process: on 2 busy cores one can wait past XLA's 40 s
# for the others to reach an all-reduce, and XLA then aborts the process. Give them 10 minutes
# (passed on to the CLI runs the tests start).
if "xla_cpu_collective_call_terminate_timeout_seconds" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += (" --xla_cpu_collective_call_terminate_timeout_seconds=600"
                              " --xla_cpu_collective_call_warn_stuck_timeout_seconds=120")
# The tests' models are tiny and compiled far more often than they run for long: LLVM at optimisation
# level 0 compiles a program about a third faster and runs it about 1.6x slower, which takes about a
# fifth off the suite's time (a test's numbers are the same to its tolerances; only the tests do this).
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"


def xla_flags(devices: int) -> str:
  """XLA_FLAGS for a process a test starts: the session's flags with `devices` host devices."""
  from bert4rec_jax import parallel
  return parallel.host_device_flags(devices, os.environ["XLA_FLAGS"])


_SCRATCH = tempfile.mkdtemp(prefix="bert4rec-tests-")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)  # each test process removes its own
# One compilation cache for the whole session: the pytest process that loads this first (the
# xdist controller) makes it, its workers and every CLI run a test starts inherit it, so the same
# small models are compiled once instead of once per process (about half of some files' time).
# Read errors of a concurrently written entry are warnings and a recompile in JAX, never wrong code.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(_SCRATCH, "jax_cache")
# Every program, also those compiled in under JAX's default second: the tests' small models compile
# fast, and the same ones again in every run a test starts (7-10% of some files' time).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
for var in ("MPLCONFIGDIR", "WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
  os.environ[var] = os.path.join(_SCRATCH, var.lower())
  os.makedirs(os.environ[var], exist_ok=True)
os.environ["WANDB_MODE"] = "disabled"

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Each test file's compiled programs are dropped when it ends: a worker process runs many files,
  and JAX's caches keep every program (about a dozen memory mappings each on CPU) until Linux's
  65,530 mappings per process are used up and XLA segfaults. `pipeline.run` does the same per run."""
  yield
  if "jax" in sys.modules:
    sys.modules["jax"].clear_caches()


@pytest.fixture
def tiny_config():
  from configs import synthetic
  c = synthetic.get_config("tiny")
  c.wandb.mode = "disabled"
  return c


@pytest.fixture(scope="session")
def data_dir():
  """The real datasets (BERT4REC_DATA_DIR or shared/data beside the checkout); tests skip without them."""
  from configs import default
  return default.DATA_DIR
