"""Turns benchmark JSON documents (experiments/benchmark.py --out=...) into docs/benchmarks.md.

  python experiments/benchmark_table.py results/cpu.json [more.json ...] > docs/benchmarks.md

Each document becomes one section headed by its device and the exact command that produced it.
"""
import datetime
import json
import sys


def section(doc: dict, title: str) -> str:
  d = doc["devices"]
  lines = [f"## {title}", "",
           f"Device: {d['count']} x {d['kind']} ({d['platform']}), {doc['cpu_count']} CPU cores, JAX {doc['jax']}."
           f" Medians over {doc['repeats']} repeats.", "", f"Command: `{doc['command']}`", ""]
  if doc["overrides"]:
    lines += [f"Overrides: `{' '.join(doc['overrides'])}`", ""]
  for key in ("prepare", "train", "eval", "predict", "large_1m_items"):
    if isinstance(doc.get(key), dict) and "error" in doc[key]:
      lines += [f"Suite `{key}` failed: `{doc.pop(key)['error'].splitlines()[-1]}`", ""]
  if "prepare" in doc:
    lines += ["### Preparation (NumPy, fresh process per run)", "",
              "| interactions | users | items | seconds | peak RSS (MB) |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['interactions']:,} | {r['users']:,} | {r['items']:,} | {r['seconds']:.2f} | {r['peak_rss_mb']:,.0f} |"
              for r in doc["prepare"]]
    lines.append("")
  if "train" in doc:
    lines += ["### Training throughput (batch 256, compile time excluded)", "",
              "| shape | len | items | predictions | loss | sequences/s | tokens/s | model TFLOP/s | compile (s) |",
              "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for name, r in doc["train"].items():
      lines.append(f"| {name} | {r['max_seq_length']} | {r['num_items']:,} | {r['max_predictions_per_seq']} | {r['loss']} |"
                   f" {r['sequences_per_second']:,.1f} | {r['tokens_per_second']:,} | {r.get('model_tflops_per_second', '-')} |"
                   f" {r['compile_seconds']:.1f} |")
    lines.append("")
  for key, label in (("eval", "Full-ranking + sampled evaluation of every user"),
                     ("predict", "Inference (top-10 to Parquet) for every user")):
    if key in doc:
      lines += [f"### {label}", "", "| shape | users | items | seconds | users/s |", "|---|---:|---:|---:|---:|"]
      lines += [f"| {n} | {r['users']:,} | {r['num_items']:,} | {r['seconds']:.2f} | {r['users_per_second']:,} |"
                for n, r in doc[key].items()]
      lines.append("")
  if "large_1m_items" in doc:
    r = doc["large_1m_items"]
    t, e = r["train"], r["eval"]
    lines += ["### 1M-item catalogue (fresh process)", "",
              "| what | figure |", "|---|---:|",
              f"| training ({t['loss']} softmax, {t['num_items']:,} items, len {t['max_seq_length']}) | "
              f"{t['sequences_per_second']:,.1f} sequences/s |",
              f"| full-ranking evaluation of {e['users']:,} users over {e['num_items']:,} items | {e['seconds']:.1f} s "
              f"({e['users_per_second']:,} users/s) |",
              f"| peak RSS (training + evaluation) | {r['peak_rss_mb']:,} MB |", ""]
  return "\n".join(lines)


def main(paths):
  docs = [json.load(open(p)) for p in paths]
  out = ["# Benchmarks", "",
         "Produced by `experiments/benchmark.py` (one JSON document per run) and turned into this page by",
         f"`python experiments/benchmark_table.py {' '.join(paths)}` on {datetime.date.today().isoformat()}.",
         "Synthetic data with the real sets' shapes (users, items, length distribution); see the",
         "docstring of `experiments/benchmark.py` for what each suite measures.", ""]
  for doc in docs:
    d = doc["devices"]
    title = (f"CPU, {doc['cpu_count']} cores" if d["platform"] == "cpu" else f"{d['kind']} x {d['count']}")
    title += f" ({' '.join(doc['overrides'])})" if doc["overrides"] else ""
    out.append(section(doc, title))
  print("\n".join(out))


if __name__ == "__main__":
  main(sys.argv[1:])
