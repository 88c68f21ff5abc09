"""data.format=tfds: a TFDS dataset built here, offline and without TensorFlow, in the shape of the
MovieLens ratings builders (string user and movie ids, an int64 timestamp), read by the pipeline."""
import json
import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from bert4rec_jax import pipeline, synthetic
from bert4rec_jax.errors import DataError

tfds = pytest.importorskip("tensorflow_datasets")


def interactions(seed=0) -> pd.DataFrame:
  df = synthetic.generate(num_users=200, num_items=30, min_length=5, max_length=14, num_strides=2, noise=0.1,
                          seed=seed)
  df["timestamp"] = df.groupby("user").cumcount().astype(np.int64) * 100 + 978_300_000
  return df


def build(data_dir: str, df: pd.DataFrame, name: str = "tiny_ratings", with_time: bool = True) -> None:
  """A GeneratorBasedBuilder with MovieLens ratings' field names and types, prepared as array_record."""
  features = {"user_id": np.str_, "movie_id": np.str_, "movie_title": np.str_, "user_rating": np.float32}
  if with_time:
    features["timestamp"] = np.int64

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i, row in enumerate(df.itertuples()):
      record = {"user_id": row.user, "movie_id": str(row.item), "movie_title": f"title {row.item}",
                "user_rating": 4.0}
      if with_time:
        record["timestamp"] = row.timestamp
      yield i, record

  # TFDS names a builder after its class (TinyRatings -> tiny_ratings); unregistered, it is read from its folder.
  camel = "".join(part.title() for part in name.split("_"))
  Builder = type(camel, (tfds.core.GeneratorBasedBuilder,), {  # noqa: N806
      "VERSION": tfds.core.Version("1.0.0"), "_info": _info, "_split_generators": _split_generators,
      "_generate_examples": _generate_examples, "__module__": __name__}, skip_registration=True)
  assert Builder.name == name
  Builder(data_dir=data_dir, file_format="array_record").download_and_prepare()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  df = interactions()
  build(data_dir, df)
  return data_dir, df


def tfds_config(tiny_config, data_dir, name="tiny_ratings"):
  c = tiny_config
  c.data.format, c.data.tfds_name, c.data.tfds_data_dir = "tfds", name, data_dir
  return c


def test_a_tfds_source_trains_like_the_same_rows_from_a_file(prepared, tiny_config, tmp_path):
  """Records come back shuffled by TFDS; ordered by their timestamps, each user's items are the
  file's, and the model is the one a Parquet file of the same rows makes."""
  data_dir, df = prepared
  c = tfds_config(tiny_config, data_dir)
  c.train.num_train_steps, c.train.eval_every_steps = 20, 0
  out = pipeline.run(c, str(tmp_path), mode="all")
  assert "tensorflow" not in sys.modules  # read without TensorFlow
  assert out["test_metrics"]["bert4rec"]["num_users"] == 200
  (saved,) = os.listdir(tmp_path / "data" / "inputs")
  assert saved.startswith("tfds-tiny_ratings-train-") and saved.endswith(".parquet")
  rows = pd.read_parquet(tmp_path / "data" / "inputs" / saved)
  assert list(rows.columns) == ["user_id", "movie_id", "timestamp"] and len(rows) == len(df)
  ordered = rows.sort_values("timestamp", kind="stable").groupby("user_id")["movie_id"].apply(list)
  expected = df.groupby("user")["item"].apply(lambda s: [str(x) for x in s])
  assert ordered.to_dict() == expected.to_dict()
  predictions = pd.read_parquet(out["predictions"])
  assert set(predictions["user"]) == set(df["user"])
  assert set(np.concatenate(predictions["items"].to_numpy())) <= set(df["item"])  # "7" read as the integer 7

  # The same content again: the same file and the same (finished) model, nothing retrained.
  again = pipeline.run(c, str(tmp_path), mode="train")
  assert again["model_name"] == out["model_name"] and again["step"] == 20
  assert os.listdir(tmp_path / "data" / "inputs") == [saved]
  # Another field as the item: another file (never the first one's columns), another model.
  c.data.item_col = "movie_title"
  titles = pipeline.run(c, str(tmp_path), mode="prepare")
  assert len(os.listdir(tmp_path / "data" / "inputs")) == 2 and titles["data_key"] != out["data_key"]


def test_tfds_mistakes_are_one_line_each(prepared, tiny_config, tmp_path):
  data_dir, df = prepared
  missing = tfds_config(tiny_config.copy_and_resolve_references(), data_dir, "no_such_dataset")
  with pytest.raises(DataError, match="tfds build no_such_dataset --file_format=array_record"):
    pipeline.run(missing, str(tmp_path), mode="prepare")
  wrong_field = tfds_config(tiny_config.copy_and_resolve_references(), data_dir)
  wrong_field.data.item_col = "product"
  with pytest.raises(DataError, match="has no field 'product'.*user_id"):
    pipeline.run(wrong_field, str(tmp_path), mode="prepare")
  # Built as tfrecord (TFDS's default), which only TensorFlow reads.
  tfrecord_dir = str(tmp_path / "tfrecord")
  shutil.copytree(data_dir, tfrecord_dir)
  (info_path,) = [os.path.join(r, f) for r, _, fs in os.walk(tfrecord_dir) for f in fs if f == "dataset_info.json"]
  info = json.load(open(info_path))
  info["fileFormat"] = "tfrecord"
  json.dump(info, open(info_path, "w"))
  if "tensorflow" not in sys.modules:
    with pytest.raises(DataError, match="tfrecord format, which only TensorFlow reads: rebuild it"):
      pipeline.run(tfds_config(tiny_config.copy_and_resolve_references(), tfrecord_dir), str(tmp_path),
                   mode="prepare")
  file_order = tfds_config(tiny_config.copy_and_resolve_references(), data_dir)
  file_order.data.time_col = "file_order"
  with pytest.raises(DataError, match="TFDS source has no order of its own"):
    pipeline.run(file_order, str(tmp_path), mode="prepare")
  # No time field: TFDS shuffles records, so there is no order to train on.
  untimed = str(tmp_path / "untimed")
  build(untimed, df, name="untimed_ratings", with_time=False)
  with pytest.raises(DataError, match="each user's order needs a time field"):
    pipeline.run(tfds_config(tiny_config.copy_and_resolve_references(), untimed, "untimed_ratings"), str(tmp_path),
                 mode="prepare")
