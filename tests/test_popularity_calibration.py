"""experiments/popularity_calibration.py: a model's probability by item popularity, and the sampled
softmax's push on each group's logits beside the full softmax's."""
import json
import os
import subprocess
import sys

import numpy as np

from bert4rec_jax import pipeline
from tests.conftest import REPO, xla_flags

sys.path.insert(0, os.path.join(REPO, "experiments"))
import popularity_calibration as pc  # noqa: E402


def slow_rank(row, target, excluded):
  """The items other than the target, not excluded, scoring at least the target's score."""
  return sum(1 for j, s in enumerate(row) if j != target and j not in set(excluded) and s >= row[target])


def test_ranks_count_ties_against_the_target_and_skip_the_history_but_never_the_target():
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 4, size=(30, 12)).astype(float)  # many ties
  targets = rng.integers(0, 12, size=30)
  excluded = [rng.choice(12, size=rng.integers(0, 5), replace=False) for _ in range(30)]
  excluded[0] = np.array([targets[0]])  # a target inside its own history stays ranked
  got = pc.ranks(scores, targets, excluded)
  assert got.tolist() == [slow_rank(scores[r], targets[r], excluded[r]) for r in range(30)]
  np.testing.assert_allclose(pc.ndcg10(np.array([0, 9, 10])), [1.0, 1 / np.log2(11), 0.0])


def test_groups_follow_the_quintiles_of_the_targets_counts():
  counts = np.array([0, 0, 1, 2, 3, 5, 8, 13, 21, 34], float)
  edges = pc.group_edges(counts)
  groups = pc.group_of(counts, edges)
  assert groups[0] == 0 and np.all(np.diff(groups) >= 0) and groups[-1] == len(edges)
  for g in range(len(edges) + 1):  # each group's counts lie between its edges
    inside = counts[groups == g]
    assert len(inside) and (g == 0 or inside.min() >= edges[g - 1]) and (g == len(edges) or inside.max() < edges[g])


def test_sampled_push_is_consistent_and_short_on_a_confident_rarely_drawn_item():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=50)
  q = rng.random(50) + 0.05
  q /= q.sum()
  full = np.exp(logits) / np.exp(logits).sum()
  full[7] = 0.0  # the target's own logit is not pushed as a negative
  many = pc.sampled_push(logits, 7, q, num=20000, draws=4, rng=rng)
  np.testing.assert_allclose(many, full, atol=0.01)
  # An item the model is sure of and the sampler seldom draws: pushed far less than the full softmax pushes it.
  logits[3], q[3] = 6.0, 1e-4
  q /= q.sum()
  full = np.exp(logits) / np.exp(logits).sum()
  few = pc.sampled_push(logits, 7, q, num=20, draws=400, rng=rng)
  assert few[3] < 0.2 * full[3] and few[7] == 0.0


def test_the_script_reports_by_popularity_and_matches_the_pipelines_ndcg(tiny_config, tmp_path):
  c = tiny_config.copy_and_resolve_references()
  c.train.num_train_steps, c.train.eval_every_steps = 60, 30
  c.train.loss, c.train.num_negatives = "sampled", 10
  workdir = tmp_path / "wd"
  out = pipeline.run(c, str(workdir), mode="all")
  name = out["model_name"]
  env = dict(os.environ, XLA_FLAGS=xla_flags(1))
  script = os.path.join(REPO, "experiments", "popularity_calibration.py")
  path = tmp_path / "calibration.json"
  done = subprocess.run([sys.executable, script, f"--workdir={workdir}", f"--model={name}", "--push_users=20",
                         "--draws=2", "--betas=0.5,1", f"--out={path}"], capture_output=True, text=True, cwd=REPO,
                        env=env, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(path.read_text())
  assert result == json.loads(done.stdout)
  with open(os.path.join(workdir, "results", name, "valid_metrics.json")) as f:
    metrics = json.load(f)["metrics"]["bert4rec"]
  assert result["users"] == metrics["num_users"]
  assert abs(result["ndcg@10"] - metrics["ndcg@10"]) < 1e-9  # the pipeline's own validation, user for user
  groups = result["groups"]
  assert len(groups) >= 2 and sum(g["items"] for g in groups) == c.data.synthetic.num_items
  for share in ("target_share", "predicted_mass", "top10_share"):
    assert abs(sum(g[share] for g in groups) - 1.0) < 1e-6, share
  assert set(result["ndcg@10_with_popularity_added"]) == {"0.5", "1"}
  push = result["push"]
  assert push["users"] == 20 and push["negatives"] == 10 and len(push["groups"]) == len(groups)
  for side in ("full_softmax", "sampled_softmax"):  # a target's pushes on the other items sum to at most 1
    assert 0 < sum(g[side] for g in push["groups"]) <= 1.0 + 1e-9
  assert push["trained_with"] == "sampled" and push["sampler"] == "popularity"
  # The weight chosen on validation (0 among the candidates), then test read once, as a test-split run reads it.
  done = subprocess.run([sys.executable, script, f"--workdir={workdir}", f"--model={name}", "--select_beta=-3,0.5,1"],
                        capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  picked = json.loads(done.stdout)["beta_selection"]
  on_valid = {float(b): v for b, v in picked["validation_ndcg@10"].items()}
  assert set(on_valid) == {-3.0, 0.0, 0.5, 1.0} and on_valid[0.0] == result["ndcg@10"]
  assert on_valid[0.5] == result["ndcg@10_with_popularity_added"]["0.5"]
  best = max(on_valid.values())
  assert picked["chosen_beta"] == min(b for b, v in on_valid.items() if v == best)
  chosen = picked["chosen_beta"]
  done = subprocess.run([sys.executable, script, f"--workdir={workdir}", f"--model={name}", "--split=test",
                         f"--betas={chosen:g}"], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
  test = json.loads(done.stdout)
  with open(os.path.join(workdir, "results", name, "test_metrics.json")) as f:
    assert abs(picked["test_ndcg@10"] - json.load(f)["metrics"]["bert4rec"]["ndcg@10"]) < 1e-9
  assert picked["test_ndcg@10"] == test["ndcg@10"] and picked["test_users"] == test["users"]
  assert picked["test_ndcg@10_with_chosen_beta"] == test["ndcg@10_with_popularity_added"].get(f"{chosen:g}",
                                                                                             test["ndcg@10"])
  # A model trained with the full softmax: the push its config's sampler would have given.
  c.train.loss = "full"
  full = pipeline.run(c, str(workdir), mode="train")["model_name"]
  done = subprocess.run([sys.executable, script, f"--workdir={workdir}", f"--model={full}", "--push_users=5",
                         "--draws=1", "--negatives=7"], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  push = json.loads(done.stdout)["push"]
  assert push["trained_with"] == "full" and push["negatives"] == 7
  # A model that is not there, and a negative user count: one line each, no traceback.
  for extra, says in ((["--model=nothing_here"], "no trained model there"), (["--split=test", "--users=-1"],
                                                                          "at least 0"),
                      (["--split=test", "--select_beta=1"], "chooses on validation"),
                      (["--select_beta=1,nan"], "finite numbers only")):
    args = [f"--workdir={workdir}", f"--model={name}"] + extra
    refused = subprocess.run([sys.executable, script] + args, capture_output=True, text=True, cwd=REPO, env=env,
                             timeout=600)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert says in refused.stderr.strip().splitlines()[-1]
