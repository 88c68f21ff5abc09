"""BERT4Rec in JAX/Flax: data preparation, pmap training, evaluation and inference.

    from bert4rec_jax import Recommender, train    # the Python API (bert4rec_jax/api.py)
"""
import importlib.util as _util
import os as _os
import sys as _sys

__version__ = "0.1.0"


def _checkout_configs():
  """A checkout used without installing (PYTHONPATH=<checkout>): its top-level configs/ folder,
  which an installed package carries as bert4rec_jax.configs, serves under that name."""
  if _util.find_spec(__name__ + ".configs") is not None:
    return
  folder = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "configs")
  if not _os.path.isfile(_os.path.join(folder, "__init__.py")):
    return
  spec = _util.spec_from_file_location(__name__ + ".configs", _os.path.join(folder, "__init__.py"),
                                       submodule_search_locations=[folder])
  module = _util.module_from_spec(spec)
  _sys.modules[spec.name] = module
  spec.loader.exec_module(module)


_checkout_configs()


def train(config, data=None, workdir=None, mode="all", overrides=None) -> dict:
  """Trains (and evaluates, predicts: `mode`) from Python; see `bert4rec_jax.api.train`."""
  from bert4rec_jax import api
  return api.train(config, data=data, workdir=workdir, mode=mode, overrides=overrides)


def __getattr__(name):  # the API and the modules, imported on first use (the command line's --help stays fast)
  if name in ("Recommender", "Recommendations"):
    from bert4rec_jax import api
    return getattr(api, name)
  if not name.startswith("_") and _util.find_spec(f"{__name__}.{name}") is not None:
    import importlib
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
