"""Property-based tests (hypothesis) of the readers and preprocessing: whatever the input, the
only failure is our own clear DataError, and no interaction is lost, changed or reordered
without being counted."""
import os
import tempfile

import pandas as pd
from hypothesis import HealthCheck, example, given, settings, strategies as st

from bert4rec_jax import preprocess, sources
from bert4rec_jax.errors import DataError

SETTINGS = settings(max_examples=60, deadline=None, database=None,  # nothing written outside tmp
                    suppress_health_check=[HealthCheck.too_slow])

pairs = st.lists(st.tuples(st.integers(-3, 12), st.integers(-5, 40)), min_size=1, max_size=80)


def data_config(fmt, path, **kw):
  from configs import default
  c = default.base().data
  c.format, c.path = fmt, path
  for k, v in kw.items():
    c[k] = v
  return c


def write(content: bytes, suffix: str) -> str:
  fd, path = tempfile.mkstemp(suffix=suffix)
  with os.fdopen(fd, "wb") as f:
    f.write(content)
  return path


@SETTINGS
@given(rows=pairs, fmt=st.sampled_from(["text", "csv"]))
def test_readers_return_exactly_the_rows_written(rows, fmt):
  if fmt == "text":
    path = write("".join(f"{u} {i}\n" for u, i in rows).encode(), ".txt")
  else:
    path = write(("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows)).encode(), ".csv")
  try:
    df = sources.read_interactions(data_config(fmt, path))
  finally:
    os.unlink(path)
  assert list(zip(df["user"].tolist(), df["item"].tolist())) == rows


@SETTINGS
@given(rows=pairs, drop_duplicates=st.booleans(), min_len=st.integers(1, 5))
def test_preparation_keeps_every_users_order_and_counts_every_drop(rows, drop_duplicates, min_len):
  df = pd.DataFrame(rows, columns=["user", "item"])
  by_user = {}
  for u, i in rows:  # the obviously-correct reference
    seq = by_user.setdefault(u, [])
    if not (drop_duplicates and seq and seq[-1] == i):
      seq.append(i)
  kept = {u: s for u, s in by_user.items() if len(s) >= min_len}
  if not kept:
    try:
      preprocess.prepare(df, drop_duplicates=drop_duplicates, min_seq_length=min_len)
    except DataError:
      return
    raise AssertionError("no user long enough must be a DataError")
  p = preprocess.prepare(df, drop_duplicates=drop_duplicates, min_seq_length=min_len)
  got = {int(u): p.vocab.decode(p.sequences[k]).tolist() for k, u in enumerate(p.users)}
  assert got == kept
  s = p.stats
  duplicates = s.get("consecutive_duplicates_dropped", 0)
  assert s["interactions_read"] == len(rows)
  assert s["interactions_read"] == s["interactions"] + s["interactions_of_short_users_dropped"] + duplicates
  assert s["users_too_short_dropped"] == len(by_user) - len(kept)


@SETTINGS
@example(content=b"PK\x03\x04", fmt="text", gz=False)  # the zip magic and nothing more (found by this test)
@given(content=st.binary(max_size=300), fmt=st.sampled_from(["text", "csv", "movielens", "parquet", "pickle"]),
       gz=st.booleans())
def test_arbitrary_bytes_never_crash_the_readers(content, fmt, gz):
  suffix = {"text": ".txt", "csv": ".csv", "movielens": ".dat", "parquet": ".parquet", "pickle": ".pkl"}[fmt]
  if gz and fmt in ("text", "csv", "movielens"):
    suffix += ".gz"
  path = write(content, suffix)
  try:
    df = sources.read_interactions(data_config(fmt, path, user_col="user"))
    assert len(df) > 0 and {"user", "item"} <= set(df.columns)
    assert df["user"].notna().all() and df["item"].notna().all()
  except DataError as e:
    assert path in str(e)
  finally:
    os.unlink(path)


@SETTINGS
@given(rows=pairs, drop_duplicates=st.booleans(), min_len=st.integers(1, 4), chunk=st.integers(1, 30),
       buckets=st.integers(1, 9))
def test_chunked_bucketed_preparation_equals_in_memory(rows, drop_duplicates, min_len, chunk, buckets):
  from bert4rec_jax import bucketed
  path = write(("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows)).encode(), ".csv")
  scratch = tempfile.mkdtemp()
  try:
    cfg = data_config("csv", path)
    outcomes = []
    for run in (lambda: preprocess.prepare(sources.read_interactions(cfg), drop_duplicates=drop_duplicates,
                                           min_seq_length=min_len),
                lambda: bucketed.prepare_bucketed(sources.read_chunks(cfg, chunk), drop_duplicates=drop_duplicates,
                                                  min_seq_length=min_len, num_buckets=buckets, tmp_parent=scratch)):
      try:
        p = run()
        outcomes.append((p.users.tolist(), p.vocab.ids.tolist(), p.sequences.offsets.tolist(),
                         p.sequences.items.tolist(), p.stats))
      except DataError as e:
        outcomes.append(str(e))
  finally:
    os.unlink(path)
    os.rmdir(scratch)  # also proves the buckets were cleaned up
  assert outcomes[0] == outcomes[1]
