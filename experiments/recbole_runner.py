"""RecBole's BERT4Rec under a wall-clock budget; run by compare_recbole.py in RecBole's own
virtual environment (it imports RecBole and torch only, never bert4rec_jax).

RecBole's own model, data pipeline, optimizer and evaluator are used as RecBole ships them;
only the loop around its `calculate_loss` is ours, so that training can stop at a time budget
instead of at epoch ends, and the test split is evaluated (full ranking) at chosen moments of
the training clock. Evaluation time is not on the training clock. Prints one JSON line.
"""
import argparse
import json
import os
import resource
import time
import warnings

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
warnings.filterwarnings("ignore", category=FutureWarning)  # pandas notices from inside RecBole


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--data_path", required=True, help="folder holding <dataset>/<dataset>.inter")
  ap.add_argument("--dataset", required=True)
  ap.add_argument("--minutes", type=float, required=True, help="training-clock budget")
  ap.add_argument("--eval_at", default="", help="comma-separated training-clock minutes to evaluate the test split at")
  ap.add_argument("--max_seq_length", type=int, default=200)
  ap.add_argument("--batch_size", type=int, default=256)
  ap.add_argument("--hidden_size", type=int, default=64)
  ap.add_argument("--seed", type=int, default=2020)
  ap.add_argument("--checkpoint_dir", required=True)
  ap.add_argument("--warmup_batches", type=int, default=5, help="batches left out of the throughput figure")
  args = ap.parse_args()

  import torch
  from recbole.config import Config
  from recbole.data import create_dataset, data_preparation
  from recbole.model.sequential_recommender import BERT4Rec
  from recbole.trainer import Trainer
  from recbole.utils import init_seed

  config = Config(model="BERT4Rec", dataset=args.dataset, config_dict={
      "data_path": args.data_path, "checkpoint_dir": args.checkpoint_dir,
      "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
      "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
      "MAX_ITEM_LIST_LENGTH": args.max_seq_length, "hidden_size": args.hidden_size,
      "inner_size": 4 * args.hidden_size, "n_layers": 2, "n_heads": 2, "train_batch_size": args.batch_size,
      "eval_batch_size": 4096, "loss_type": "CE", "train_neg_sample_args": None,
      "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
      "metrics": ["NDCG", "Hit"], "topk": [10], "valid_metric": "NDCG@10", "device": "cpu", "use_gpu": False,
      "repeatable": True, "seed": args.seed, "show_progress": False, "log_wandb": False})
  init_seed(config["seed"], config["reproducibility"])
  t0 = time.perf_counter()
  ds = create_dataset(config)
  train_data, _, test_data = data_preparation(config, ds)
  prepare_s = time.perf_counter() - t0
  model = BERT4Rec(config, train_data.dataset).to(config["device"])
  trainer = Trainer(config, model)
  optimizer = trainer.optimizer

  eval_at = sorted(float(m) * 60 for m in args.eval_at.split(",") if m) or [args.minutes * 60]
  budget = args.minutes * 60
  curve, clock, sequences, batches = [], 0.0, 0, 0
  rate_seqs, rate_real, rate_time = 0, 0, 0.0
  done = False

  def evaluate():
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    model.train()
    row = {"train_seconds": round(clock, 1), "sequences": sequences, "epochs": round(sequences / len(train_data.dataset), 4)}
    row.update({k.replace("hit", "hr"): float(v) for k, v in result.items()})
    curve.append(row)
    print(json.dumps({"recbole_progress": row}), flush=True)

  model.train()
  while not done:
    batches_of_epoch = iter(train_data)
    while True:
      start = time.perf_counter()  # the clock includes RecBole's data loader (its masking runs there)
      interaction = next(batches_of_epoch, None)
      if interaction is None:
        break
      interaction = interaction.to(config["device"])
      optimizer.zero_grad()
      loss = model.calculate_loss(interaction)
      loss.backward()
      optimizer.step()
      loss = float(loss.detach())  # the step is finished when the loss is on the host
      spent = time.perf_counter() - start
      n = len(interaction)
      clock += spent
      sequences += n
      batches += 1
      if batches > args.warmup_batches:
        rate_seqs += n
        rate_real += int(interaction[model.ITEM_SEQ_LEN].sum())
        rate_time += spent
      while eval_at and clock >= eval_at[0]:
        eval_at.pop(0)
        evaluate()
      if clock >= budget:
        done = True
        break
  if not curve or curve[-1]["sequences"] != sequences:
    evaluate()
  print(json.dumps({"recbole": {
      "recbole_version": __import__("recbole").__version__, "torch": torch.__version__,
      "torch_threads": torch.get_num_threads(), "prepare_seconds": round(prepare_s, 1),
      "train_seconds": round(clock, 1), "sequences": sequences, "batches": batches,
      "training_examples_per_epoch": len(train_data.dataset), "epochs": round(sequences / len(train_data.dataset), 4),
      "sequences_per_second": round(rate_seqs / rate_time, 1),
      "tokens_per_second": round(rate_seqs * args.max_seq_length / rate_time),
      "real_tokens_per_second": round(rate_real / rate_time),
      "num_items": int(train_data.dataset.item_num), "mask_slots_per_sequence": int(model.mask_item_length),
      "final": curve[-1], "curve": curve, "peak_rss_mb": round(peak_rss_mb()), "last_loss": loss}}), flush=True)


if __name__ == "__main__":
  main()
