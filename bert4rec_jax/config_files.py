"""Config files: the shipped ones by name, any other by path, and fields set by dotted name.

The shipped configs are the package `bert4rec_jax.configs` (the top-level `configs/` folder of a
checkout, installed under the package), so `--config=default`, `--config=ml1m.py` and
`--config=synthetic:tiny` work wherever the package is installed, and `--config=<path>` still
reads any file. A config file defines `get_config()` (or `get_config(variant)` for `file:variant`).
"""
import difflib
import importlib.util
import os
from typing import List

from bert4rec_jax.errors import ConfigError


def shipped_dir() -> str:
  """The folder of the shipped config files."""
  import bert4rec_jax.configs as shipped
  return os.path.dirname(os.path.abspath(shipped.__file__))


def names() -> List[str]:
  """The shipped configs' names (default, ml1m, ...)."""
  return sorted(f[:-3] for f in os.listdir(shipped_dir()) if f.endswith(".py") and not f.startswith("_"))


def resolve(spec: str) -> str:
  """`path[:variant]` unchanged when `path` is a file; a shipped config's name (`ml1m`, `ml1m.py`,
  `configs/ml1m.py` outside a checkout) as that file's path (`:variant` kept); anything else
  unchanged (loading it then fails naming it)."""
  if os.path.isfile(spec):
    return spec
  path, sep, variant = spec.rpartition(":") if ":" in spec else (spec, "", "")
  if not path or os.path.isfile(path):
    return spec
  name = os.path.basename(path)
  name = name[:-3] if name.endswith(".py") else name
  if path not in (name, name + ".py", os.path.join("configs", name + ".py")):
    return spec
  candidate = os.path.join(shipped_dir(), name + ".py")
  return candidate + sep + variant if os.path.isfile(candidate) else spec


def split_variant(spec: str):
  """(path, variant) of `path[:variant]`: a file whose own name holds a colon is a path whole."""
  if os.path.isfile(spec) or ":" not in spec:
    return spec, ""
  path, _, variant = spec.rpartition(":")
  return path, variant


def load(spec: str):
  """The ConfigDict of `spec` (a shipped config's name or a file's path, `:variant` allowed)."""
  resolved = resolve(str(spec))
  path, variant = split_variant(resolved)
  if not os.path.isfile(path):
    raise ConfigError(f"config {spec!r}: no such file, and no shipped config of that name (shipped: "
                      f"{', '.join(names())})")
  module_spec = importlib.util.spec_from_file_location(f"_bert4rec_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


def set_field(config, dotted: str, value) -> None:
  """config.<dotted> = value; a field the config does not have is a ConfigError naming the
  closest one."""
  node, parts = config, dotted.split(".")
  for i, part in enumerate(parts):
    keys = list(node.keys()) if hasattr(node, "keys") else []
    if part not in keys:
      near = difflib.get_close_matches(part, keys, n=1)
      where = ".".join(parts[:i]) or "the config"
      hint = f" (did you mean {'.'.join(parts[:i] + near)}?)" if near else ""
      raise ConfigError(f"{dotted}: {where} has no field {part!r}{hint}; `bert4rec-jax --fields` lists every field")
    if i == len(parts) - 1:
      node[part] = value
    else:
      node = node[part]


def field_docs():
  """[(dotted field, default, one-line doc)] of every field of configs/default.py's `base()`, in
  its order: the doc is the field's trailing comment, or the comment lines just above it."""
  import inspect
  import re
  from bert4rec_jax.configs import default
  values = _flatten(default.base().to_dict())
  docs, pending = {}, []
  for line in inspect.getsource(default.base).splitlines():
    text = line.strip()
    if text.startswith("#"):
      pending.append(text.lstrip("# "))
      continue
    m = re.match(r"c\.([\w.]+) = (.*?)(?:\s+#\s*(.*))?$", text)
    if m and m.group(1) in values:
      docs[m.group(1)] = m.group(3) or " ".join(pending)
    pending = []
  order = {k: i for i, k in enumerate(docs)}  # the file's order (sections, then fields as written)
  return [(k, values[k], docs.get(k, "")) for k in sorted(values, key=lambda k: (order.get(k, len(order)), k))]


def _flatten(tree, prefix=""):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, prefix + k + "."))
    else:
      out[prefix + k] = v
  return out
