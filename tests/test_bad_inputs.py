"""The malformed-input corpus (tests/bad_inputs/, made by make_corpus.py there): every file
gets its documented outcome through the whole preparation path: a clear error naming the
file and what is wrong, or the documented handling with every interaction accounted for."""
import os

import numpy as np
import pytest

from bert4rec_jax import dataset, pipeline
from bert4rec_jax.errors import ConfigError, DataError

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bad_inputs")

# (file, format, config.data overrides, error regex) -> DataError naming the file.
ERRORS = [
    ("empty.txt", "text", {}, "the file is empty"),
    ("whitespace_only.txt", "text", {}, "the file is empty"),
    ("header_only.csv", "csv", {}, "no interactions in the file"),
    ("semicolon.csv", "csv", {}, "separated by something other than commas"),
    ("tab.csv", "csv", {}, "separated by something other than commas"),
    ("three_fields.txt", "text", {}, "expected 2 whitespace-separated fields per line .* found 3"),
    ("one_field.txt", "text", {}, "expected 2 whitespace-separated fields per line .* found 1"),
    ("huge_ids.txt", "text", {}, "line 2: item id '1180591620717411303424' does not fit in a 64-bit integer"),
    ("float_ids.txt", "text", {}, "line 2: item id '10.5' is not an integer"),
    ("nan_ids.csv", "csv", {}, "column 'item' has a missing value"),
    ("missing_id.csv", "csv", {}, "column 'user' has a missing value"),
    ("string_ids.txt", "text", {}, "line 2: item id 'abc' is not an integer"),
    ("bool_ids.csv", "csv", {}, "holds booleans"),
    ("duplicated_columns.csv", "csv", {}, r"duplicated column name\(s\) \['item'\]"),
    ("missing_column.csv", "csv", {}, r"missing column\(s\) \['user'\]"),
    ("non_utf8.csv", "csv", {}, "cannot parse .*UnicodeDecodeError"),
    ("time_nan.csv", "csv", {"time_col": "time"}, "missing timestamps"),
    ("time_strings.csv", "csv", {"time_col": "time"}, "holds neither numbers nor dates"),
    ("movielens_short.dat", "movielens", {}, "UserID::MovieID::Rating::Timestamp"),
    ("movielens_bad_id.dat", "movielens", {}, "item id 'abc' is not an integer"),
    ("not_gzip.txt.gz", "text", {}, "cannot parse .*Not a gzipped file"),
    ("truncated.txt.gz", "text", {}, "cannot parse .*EOFError"),
    ("not_parquet.parquet", "parquet", {}, "not a readable Parquet file"),
    ("missing_column.parquet", "parquet", {}, r"missing column\(s\) \['user'\]"),
    ("garbage.pkl", "pickle", {"user_col": "uid"}, "cannot unpickle"),
    ("series.pkl", "pickle", {"user_col": "uid"}, "expected a pickled pandas DataFrame, found Series"),
    ("scalar_lists.pkl", "pickle", {"user_col": "uid"}, "must hold lists of item ids"),
    ("empty_lists.pkl", "pickle", {"user_col": "uid"}, "no interactions in the file"),
    ("one_interaction_users.txt", "text", {"min_seq_length": 4}, "no user has at least min_seq_length=4"),
    ("long_sequence.txt.gz", "xml", {}, "config.data.format='xml' is not one of"),
]

# (file, format, overrides, {original user: original items in order}, users dropped as too short)
HANDLED = [
    ("bom.csv", "csv", {}, {1: [10, 11, 12]}, 0),  # the byte-order mark is not part of the header
    ("crlf.txt", "text", {}, {1: [10, 11, 12]}, 0),
    ("crlf.csv", "csv", {}, {1: [10, 11, 12]}, 0),
    ("negative_ids.txt", "text", {}, {-1: [10, -11, 12]}, 0),  # ids are labels: any 64-bit integer
    ("zero_ids.txt", "text", {}, {0: [0, 1, 2]}, 0),
    ("uint64_ids.csv", "csv", {}, {1: ["18446744073709551615", "18446744073709551614", "10"]}, 0),  # kept exactly, as text
    ("integral_float_ids.txt", "text", {}, {1: [10, 11, 12]}, 0),  # 10.0 is the id 10
    ("string_ids.csv", "csv", {}, {"alice": ["sku-1", "sku-2", "sku-3"]}, 0),
    ("mixed_ids.csv", "csv", {}, {1: ["10", "a", "11"]}, 0),  # one non-integer id makes the column text
    ("huge_ids.csv", "csv", {}, {1: ["10", "99999999999999999999999", "11"]}, 0),  # so does one beyond 64 bits
    ("extra_columns.csv", "csv", {}, {1: [10, 11, 12]}, 0),  # other columns are ignored
    ("blank_lines.txt", "text", {}, {1: [10, 11, 12]}, 0),
    ("trailing_spaces.txt", "text", {}, {1: [10, 11, 12]}, 0),
    ("time_dates.csv", "csv", {"time_col": "time"}, {1: [10, 11, 12]}, 0),  # ordered by date
    ("one_interaction_users.txt", "text", {}, {3: [12, 13, 14]}, 3),  # users below min_seq_length: dropped, counted
    ("long_sequence.txt.gz", "text", {}, {1: [i % 1000 for i in range(100_000)], 2: [1, 2, 3], 3: [3, 2, 1]}, 0),
]


def config_for(tiny_config, name, fmt, overrides):
  c = tiny_config
  c.data.format, c.data.path = fmt, os.path.join(CORPUS, name)
  for k, v in overrides.items():
    c.data[k] = v
  return c


def test_corpus_is_complete():
  files = {f for f in os.listdir(CORPUS) if f != "make_corpus.py"}
  used = {e[0] for e in ERRORS} | {h[0] for h in HANDLED}
  assert files == used and len(used) >= 30


@pytest.mark.parametrize("name,fmt,overrides,match", ERRORS, ids=[f"{e[0]}:{e[1]}" for e in ERRORS])
def test_malformed_input_gets_a_clear_error(tiny_config, tmp_path, name, fmt, overrides, match):
  with pytest.raises(DataError, match=match) as e:
    pipeline.run(config_for(tiny_config, name, fmt, overrides), str(tmp_path), mode="prepare")
  if fmt != "xml":
    assert name in str(e.value)  # the message names the file
  assert not os.path.exists(os.path.join(tmp_path, "data", "processed")) or \
      not os.listdir(os.path.join(tmp_path, "data", "processed"))  # nothing half-written


@pytest.mark.parametrize("name,fmt,overrides,want,dropped", HANDLED, ids=[h[0] for h in HANDLED])
def test_odd_input_is_handled_as_documented(tiny_config, tmp_path, name, fmt, overrides, want, dropped):
  c = config_for(tiny_config, name, fmt, overrides)
  pipeline.run(c, str(tmp_path), mode="prepare")
  prepared, _ = dataset.load_or_prepare(c.data, str(tmp_path), pipeline.min_seq_length(c))
  got = {u.item() if hasattr(u, "item") else u: list(prepared.vocab.decode(prepared.sequences[i]))
         for i, u in enumerate(prepared.users)}
  assert {k: [x.item() if hasattr(x, "item") else x for x in v] for k, v in got.items()} == want
  stats = prepared.stats
  assert stats["users_too_short_dropped"] == dropped
  assert stats["interactions_read"] == stats["interactions"] + stats["interactions_of_short_users_dropped"]
  assert stats["interactions"] == sum(len(v) for v in want.values())


def test_unknown_task_is_a_config_error(tiny_config, tmp_path):
  c = config_for(tiny_config, "crlf.txt", "text", {})
  c.task = "train_everything"
  with pytest.raises(ConfigError, match="config.task='train_everything': use one of"):
    pipeline.run(c, str(tmp_path), mode="prepare")
  np.testing.assert_equal(os.listdir(tmp_path), [])
