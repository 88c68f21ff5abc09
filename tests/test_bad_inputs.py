"""The malformed-input corpus (tests/bad_inputs/, made by make_corpus.py there): every file
gets its documented outcome through the whole preparation path: a clear error naming the
file and what is wrong, or the documented handling with every interaction accounted for."""
import datetime
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bert4rec_jax import dataset, pipeline
from bert4rec_jax.errors import ConfigError, DataError
from tests.conftest import REPO

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
    ("nan_ids.csv", "csv", {}, "column 'item' has a missing value"),
    ("missing_id.csv", "csv", {}, "column 'user' has a missing value"),
    ("bool_ids.csv", "csv", {}, "holds booleans"),
    ("duplicated_columns.csv", "csv", {}, r"duplicated column name\(s\) \['item'\]"),
    ("missing_column.csv", "csv", {}, r"missing column\(s\) \['user'\]"),
    ("non_utf8.csv", "csv", {}, r"bytes that are not UTF-8 text \(line 2\): the input must be UTF-8"),
    ("non_utf8.txt", "text", {}, r"bytes that are not UTF-8 text \(line 3\)"),
    ("header.txt", "text", {}, r"line 1 \(user item\) looks like a header: the text format has none"),
    ("header.txt", "text", {"chunk_rows": 1}, r"line 1 \(user item\) looks like a header"),
    ("comment.txt", "text", {}, "line 2 starts with '#': the text format has no comment lines"),
    ("comment.txt", "text", {"chunk_rows": 1}, "line 2 starts with '#'"),
    ("commas.txt", "text", {}, "found 1; the lines hold commas: for a CSV file use data.format=csv"),
    ("time_nan.csv", "csv", {"time_col": "time"}, "missing timestamps"),
    ("time_strings.csv", "csv", {"time_col": "time"}, "holds neither numbers nor dates"),
    ("movielens_short.dat", "movielens", {}, "UserID::MovieID::Rating::Timestamp"),
    ("not_gzip.txt.gz", "text", {}, "cannot parse .*Not a gzipped file"),
    ("truncated.txt.gz", "text", {}, "cannot parse .*EOFError"),
    ("not_parquet.parquet", "parquet", {}, "not a readable Parquet file"),
    ("missing_column.parquet", "parquet", {}, r"missing column\(s\) \['user'\]"),
    ("garbage.pkl", "pickle", {"user_col": "uid"}, "cannot unpickle"),
    ("series.pkl", "pickle", {"user_col": "uid"}, "expected a pickled pandas DataFrame, found Series"),
    ("scalar_lists.pkl", "pickle", {"user_col": "uid"}, "must hold lists of item ids"),
    ("empty_lists.pkl", "pickle", {"user_col": "uid"}, "no interactions in the file"),
    ("one_interaction_users.txt", "text", {"min_seq_length": 4}, "no user has at least min_seq_length=4"),
    ("short_line.txt", "text", {}, "line 2: no item id"),
    ("two_time_columns.csv", "csv", {}, r"several time-like columns \['timestamp', 'date'\]; set config.data.time_col"),
    ("nested_lists.pkl", "pickle", {"user_col": "uid"}, "must hold lists of item ids; found list"),
    ("unnamed_extra_field.csv", "csv", {}, "rows have more fields than the header names"),
    ("unnamed_extra_field.csv", "csv", {"chunk_rows": 2}, "rows have more fields than the header names"),
    ("header_words.txt", "text", {}, r"line 1 \(user_id item_id\) looks like a header"),
    ("header_words.txt", "text", {"chunk_rows": 2}, r"line 1 \(user_id item_id\) looks like a header"),
    ("dates_ambiguous.csv", "csv", {}, r"dates like '11/02/2020' \(data row 1\) read both month-first and day-first"),
    ("dates_ambiguous.csv", "csv", {"chunk_rows": 1}, "read both month-first and day-first"),
]

# (file, format, overrides, {original user: original items in order}, users dropped as too short)
HANDLED = [
    ("bom.csv", "csv", {}, {1: [10, 11, 12]}, 0),  # the byte-order mark is not part of the header
    ("crlf.txt", "text", {}, {1: [10, 11, 12]}, 0),
    ("crlf.csv", "csv", {}, {1: [10, 11, 12]}, 0),
    ("negative_ids.txt", "text", {}, {-1: [10, -11, 12]}, 0),  # ids are labels: any 64-bit integer
    ("zero_ids.txt", "text", {}, {0: [0, 1, 2]}, 0),
    ("uint64_ids.csv", "csv", {}, {1: ["18446744073709551615", "18446744073709551614", "10"]}, 0),  # kept exactly, as text
    # Ids are labels: a column whose ids are not all plain integers is text, each id as written.
    ("integral_float_ids.txt", "text", {}, {1: ["10.0", "11.0", "12"]}, 0),
    ("float_ids.txt", "text", {"task": "train_val"}, {1: ["10", "10.5"]}, 0),
    ("string_ids.txt", "text", {"task": "train_val"}, {1: ["10", "abc"]}, 0),
    ("huge_ids.txt", "text", {"task": "train_val"}, {1: ["10", "1180591620717411303424"]}, 0),
    ("movielens_bad_id.dat", "movielens", {"task": "train_val"}, {1: ["10", "abc"]}, 0),
    ("leading_zeros.txt", "text", {}, {"007": [1, 2, 3], "7": [4, 5, 6]}, 0),  # never merged
    ("leading_zeros.csv", "csv", {}, {"007": [1, 2, 3], "7": [4, 5, 6]}, 0),
    ("leading_zeros.dat", "movielens", {}, {"007": [1, 2, 3], "7": [4, 5, 6]}, 0),
    ("leading_zeros.parquet", "parquet", {}, {"007": [1, 2, 3], "7": [4, 5, 6]}, 0),
    ("spaced_ids.csv", "csv", {}, {7: [10, 11, 12]}, 0),
    ("minus_zero.txt", "text", {}, {"-0": [1, 2, 3], "0": [4, 5, 6]}, 0),
    ("minus_zero.txt", "text", {"chunk_rows": 3}, {"-0": [1, 2, 3], "0": [4, 5, 6]}, 0),
    ("implicit_time.csv", "csv", {}, {1: [10, 11, 12]}, 0),  # the timestamp column orders the rows (logged)
    ("implicit_time.csv", "csv", {"time_col": "file_order"}, {1: [12, 10, 11]}, 0),
    ("implicit_time.csv", "csv", {"chunk_rows": 2}, {1: [10, 11, 12]}, 0),  # read in chunks: the same
    ("leading_zeros.csv", "csv", {"chunk_rows": 2}, {"007": [1, 2, 3], "7": [4, 5, 6]}, 0),
    ("string_ids.csv", "csv", {}, {"alice": ["sku-1", "sku-2", "sku-3"]}, 0),
    ("mixed_ids.csv", "csv", {}, {1: ["10", "a", "11"]}, 0),  # one non-integer id makes the column text
    ("huge_ids.csv", "csv", {}, {1: ["10", "99999999999999999999999", "11"]}, 0),  # so does one beyond 64 bits
    ("extra_columns.csv", "csv", {}, {1: [10, 11, 12]}, 0),  # other columns are ignored
    ("blank_lines.txt", "text", {}, {1: [10, 11, 12]}, 0),
    ("trailing_spaces.txt", "text", {}, {1: [10, 11, 12]}, 0),
    ("time_dates.csv", "csv", {"time_col": "time"}, {1: [10, 11, 12]}, 0),  # ordered by date
    ("dates_day_first.csv", "csv", {}, {1: [10, 11, 12]}, 0),  # the one reading that fits every date
    # In chunks: the layout is the whole column's (the first chunk alone, 11/02, fits both).
    ("dates_day_first.csv", "csv", {"chunk_rows": 1}, {1: [10, 11, 12]}, 0),
    ("mixed_lists.pkl", "pickle", {"user_col": "uid"}, {1: ["10", "a", "7"]}, 0),  # user 2: no items
    ("quotes.txt", "text", {}, {1: ["10", '"11', '12"']}, 0),
    ("quotes.txt", "text", {"chunk_rows": 2}, {1: ["10", '"11', '12"']}, 0),
    ("one_interaction_users.txt", "text", {}, {3: [12, 13, 14]}, 3),  # users below min_seq_length: dropped, counted
    ("gzip_named_txt.txt", "text", {}, {1: [10, 11, 12]}, 0),  # compressed: known by its bytes, not its name
    ("gzip_named_txt.txt", "text", {"chunk_rows": 2}, {1: [10, 11, 12]}, 0),
    ("long_sequence.txt.gz", "text", {}, {1: [i % 1000 for i in range(100_000)], 2: [1, 2, 3], 3: [3, 2, 1]}, 0),
]


def config_for(tiny_config, name, fmt, overrides):
  c = tiny_config
  c.data.format, c.data.path = fmt, os.path.join(CORPUS, name)
  for k, v in overrides.items():
    if k == "task":
      c.task = v
    else:
      c.data[k] = v
  return c


def test_corpus_is_complete():
  files = {f for f in os.listdir(CORPUS) if f not in ("make_corpus.py", "__pycache__")}
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


def test_a_line_number_is_never_read_from_compressed_bytes(tiny_config, tmp_path):
  """A zip (or zstd) input is decoded by pandas alone: the error for a bad line inside it gives no
  line number rather than one counted over the compressed bytes."""
  import zipfile
  path = str(tmp_path / "bad.zip")
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("bad.txt", b"1 10\n1 11\n\xff\xfe 3\n")
  c = tiny_config
  c.data.format, c.data.path = "text", path
  with pytest.raises(DataError, match="bad.zip: bytes that are not UTF-8 text: the input must be UTF-8"):
    pipeline.run(c, str(tmp_path / "w"), mode="prepare")


@pytest.mark.parametrize("name,fmt,overrides,want,dropped", HANDLED, ids=[f"{h[0]}:{h[2]}" for h in HANDLED])
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


def test_unknown_format_is_a_config_error_before_anything_is_read(tiny_config, tmp_path):
  with pytest.raises(ConfigError, match="config.data.format='xml': use one of"):
    pipeline.run(config_for(tiny_config, "long_sequence.txt.gz", "xml", {}), str(tmp_path), mode="prepare")
  np.testing.assert_equal(os.listdir(tmp_path), [])


def test_unknown_task_is_a_config_error(tiny_config, tmp_path):
  c = config_for(tiny_config, "crlf.txt", "text", {})
  c.task = "train_everything"
  with pytest.raises(ConfigError, match="config.task='train_everything': use one of"):
    pipeline.run(c, str(tmp_path), mode="prepare")
  np.testing.assert_equal(os.listdir(tmp_path), [])


# Settings that cannot work: each refused before anything is read or compiled, naming the field.
BAD_SETTINGS = [
    ("train.batch_size", 0, "config.train.batch_size=0: must be >= 1"),
    ("train.batch_size", -32, "config.train.batch_size=-32: must be >= 1"),
    ("eval.batch_size", 0, "config.eval.batch_size=0: must be >= 1"),
    ("predict.top_k", 0, "config.predict.top_k=0: must be >= 1"),
    ("train.log_every_steps", 0, "config.train.log_every_steps=0: must be >= 1"),
    ("train.checkpoint_every_steps", 0, "config.train.checkpoint_every_steps=0: must be >= 1"),
    ("train.keep_checkpoints", 0, "config.train.keep_checkpoints=0: must be >= 1"),
    ("train.logit_chunk_elements", -1, "config.train.logit_chunk_elements=-1: must be >= 0"),
    ("eval.ks", (1, 0, 10), r"config.eval.ks=\(1, 0, 10\): cut-offs must be whole numbers >= 1"),
    ("eval.ks", (), r"config.eval.ks=\(\): cut-offs"),
    ("model.hidden_dropout_prob", 1.0, r"config.model.hidden_dropout_prob=1.0: must be in \[0, 1\)"),
    ("model.hidden_dropout_prob", -0.1, r"hidden_dropout_prob=-0.1: must be in \[0, 1\)"),
    ("model.attention_probs_dropout_prob", 1.5, r"attention_probs_dropout_prob=1.5: must be in \[0, 1\)"),
    ("model.hidden_dropout_prob", float("nan"), r"hidden_dropout_prob=nan: must be in \[0, 1\)"),
    ("eval.negative_sampling", "zipf", "config.eval.negative_sampling='zipf': use one of 'popularity', 'uniform'"),
    ("train.learning_rate", -0.001, r"config.train.learning_rate=-0.001: must be > 0 \(0 = from the data\)"),
    ("train.weight_decay", -2.0, r"config.train.weight_decay=-2.0: must be >= 0 \(-1 = from the data\)"),
    ("train.learning_rate", float("inf"), "learning_rate=inf: must be > 0"),
    ("seed", -1, r"config.seed=-1: must be an integer in \[0, 2\*\*32\)"),
    ("model.num_attention_heads", 0, "config.model.num_attention_heads=0: must be >= 1"),
    ("masking.masked_lm_prob", 0.0, r"masked_lm_prob=0.0: must be in \(0, 1\]"),
    ("masking.last_keep_prob", 1.5, r"last_keep_prob=1.5: must be in \[0, 1\]"),
    ("train.prop_sliding_window", 2.0, r"prop_sliding_window=2.0: must be in \(0, 1\]"),
    ("model_name", "../elsewhere", "a training run's model name is a folder name"),
    ("data.min_seq_length", 2, "task 'train_val_test' needs at least 3 items per user"),
    ("wandb.mode", "loud", "config.wandb.mode='loud': use one of"),
    ("eval.num_negatives", -5, "config.eval.num_negatives=-5: must be >= 0"),
    ("predict.users_per_part", -1, "config.predict.users_per_part=-1: must be >= 0"),
    ("train.select_metric", "mean_rank", "config.train.select_metric='mean_rank': use a metric where higher is better"),
    ("train.select_metric", "sampled_ndcg@500", r"config.train.select_metric='sampled_ndcg@500': sampled metrics stop"),
    ("train.patience", -1, "config.train.patience=-1: must be >= 0"),
    ("train.num_epochs", -2.0, "config.train.num_epochs=-2.0: must be >= 0"),
    ("model_name", "m" * 151, r"config.model_name='mmmmmmmmmmmmmmmmmmmm...': at most 150 bytes \(it has 151\)"),
    ("data.path", "rows.txt", r"config.data.path='rows.txt': format 'synthetic' reads no file: give the file's format"),
]


@pytest.mark.parametrize("kind,field,match", [
    ("most_popular", "with_embeddings", "the most_popular baseline has no hidden state"),
    ("markov", "with_embeddings", "the markov baseline has no hidden state"),
    ("markov", "users_per_part", "the markov baseline writes its predictions as one file")])
def test_what_a_baseline_cannot_write_is_refused(tiny_config, tmp_path, kind, field, match):
  c = tiny_config
  c.model.kind, c.predict[field] = kind, True if field == "with_embeddings" else 10
  with pytest.raises(ConfigError, match=match):
    pipeline.run(c, str(tmp_path), mode="all")
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("field,value,match", BAD_SETTINGS, ids=[f"{f}={v}" for f, v, _ in BAD_SETTINGS])
def test_every_bad_setting_is_refused_before_any_work(tiny_config, tmp_path, field, value, match):
  c = tiny_config
  *sections, last = field.split(".")
  node = c
  for s in sections:
    node = node[s]
  node[last] = value
  for mode in ("train", "all"):
    with pytest.raises(ConfigError, match=match):
      pipeline.run(c, str(tmp_path), mode=mode)
  assert os.listdir(tmp_path) == []  # nothing read, prepared or written


def test_every_bad_setting_is_named_at_once(tiny_config, tmp_path):
  c = tiny_config
  c.train.batch_size, c.eval.ks, c.predict.top_k = 0, (0,), -1
  with pytest.raises(ConfigError) as e:
    pipeline.run(c, str(tmp_path), mode="all")
  lines = str(e.value).splitlines()
  assert lines[0] == "3 settings need fixing:" and len(lines) == 4
  assert any("train.batch_size=0" in x for x in lines) and any("eval.ks=(0,)" in x for x in lines)
  assert any("predict.top_k=-1" in x for x in lines)


def cli(tmp_path, *args, env=None):
  return subprocess.run([sys.executable, "-m", "bert4rec_jax.main", f"--workdir={tmp_path}", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300, env=dict(os.environ, **(env or {})))


def test_the_command_line_answers_mistakes_in_one_line(tmp_path):
  """A mistyped field, a bad value, a missing config file or a refused setting: one line, the
  argument or field named, status 1, never a traceback."""
  cases = [
      (["--config=configs/synthetic.py:tiny", "--config.train.num_train_step=5"],
       "error: --config.train.num_train_step: the config has no field 'num_train_step' "
       "(did you mean --config.train.num_train_steps?)"),
      (["--config=configs/synthetic.py:tiny", "--config.trian.batch_size=5"],
       "error: --config.trian.batch_size: the config has no field 'trian'"),
      (["--config=configs/synthetic.py:tiny", "--config.train.num_train_steps=abc"],
       "error: flag --config.train.num_train_steps=abc"),
      ([], "error: --config is required: a shipped config's name (beauty, default, ml1m, synthetic)"),
      (["--config=configs/nope.py"], "error: --config=configs/nope.py: cannot load the config file (no such file, "
       "nor a shipped config of that name: beauty, default, ml1m, synthetic)"),
      (["--config=configs/synthetic.py:tiny", "--config.train.batch_size=0"],
       "error: config.train.batch_size=0: must be >= 1"),
      (["--config=configs/synthetic.py:nope"], "error: --config="),  # the config file's own error, no traceback
  ]
  for args, want in cases:
    out = cli(tmp_path, *args)
    lines = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert out.returncode == 1 and "Traceback" not in out.stderr, (args, out.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith(want), (args, out.stderr[-2000:])
    assert out.stderr.count(lines[0][len("error: "):]) == 1, out.stderr  # said once, not logged as well
  assert lines[0].endswith("synthetic.py:nope: the config file failed (ValueError: configs/synthetic.py: unknown "
                           "variant 'nope' (expected '' or 'tiny'))"), lines


@pytest.mark.parametrize("dates, layout", [
    (["2020-01-31 12:00", "2020-02-01 08:30", "2019-12-31 23:59"], "%Y-%m-%d %H:%M"),
    (["31/01/2020", "01/02/2020", "13/12/2019"], "%d/%m/%Y"),  # only day-first fits (31, 13)
    (["01/31/2020", "02/01/2020", "12/13/2019"], "%m/%d/%Y"),  # only month-first fits
])
def test_text_dates_in_memory_are_read_once_and_as_written(monkeypatch, dates, layout):
  """A column given whole (no chunks) is read once under each layout tried, never once more after
  its layout is found, and gives the dates a reference reading of the known layout gives."""
  from bert4rec_jax import sources
  calls = []
  real = sources._to_datetime

  def counted(text, *args, **how):
    calls.append(how)
    return real(text, *args, **how)
  monkeypatch.setattr(sources, "_to_datetime", counted)
  got = sources._dates(pd.Series(dates), "f.csv", "time", 0)
  expected = pd.Series([pd.Timestamp(datetime.datetime.strptime(d, layout)) for d in dates])
  assert (got.to_numpy() == expected.to_numpy()).all()
  assert len(calls) == len({json.dumps(h, sort_keys=True) for h in calls})  # no layout read twice
