"""Turns benchmark JSON documents (experiments/benchmark.py --out=...) into docs/benchmarks.md.

  python experiments/benchmark_table.py results/cpu.json [more.json ...] > docs/benchmarks.md

Each document becomes one section headed by its device and the exact command that produced it;
documents of experiments/compare_recbole.py become a side-by-side section (with --ours_only, a
section of our curve alone, as used to choose our settings on the validation split), and those of
experiments/time_to_quality.py a quality-against-seconds section.
"""
import datetime
import json
import sys


MEDIAN_SUITES = ("prepare", "train", "eval", "predict", "recommend", "validation", "softmax", "recipe_cost",
                 "large_1m_items")


def cores(doc: dict) -> str:
  """"2 CPU cores", with the CPU's model and vector unit where the JSON names them."""
  return f"{doc['cpu_count']} CPU cores" + (f" ({doc['cpu']})" if doc.get("cpu") else "")


def when(doc: dict) -> str:
  """"2026-12-04, code of commit abc1234": the date and the commit a JSON document names."""
  commit = doc.get("git_commit", "")
  changed = " with uncommitted changes" if doc.get("uncommitted_changes") else ""
  return ", ".join(x for x in (doc.get("date", ""), commit and f"code of commit {commit[:7]}{changed}") if x)


def section(doc: dict, title: str) -> str:
  d, dated = doc["devices"], when(doc)
  lines = [f"## {title}", "",
           f"Device: {d['count']} x {d['kind']} ({d['platform']}), {cores(doc)}, JAX {doc['jax']}."
           + (f" Medians over {doc['repeats']} repeats." if any(k in doc for k in MEDIAN_SUITES)
              else " One run per row (each minutes long, in a fresh process)."), "",
           f"Command: `{doc['command']}`" + (f" ({dated})" if dated else ""), ""]
  if doc["overrides"]:
    lines += [f"Overrides: `{' '.join(doc['overrides'])}`", ""]
  if doc.get("note"):  # what the command and commit do not say (e.g. a working tree's change)
    lines += [f"Note: {doc['note']}.", ""]
  for key in ("prepare", "train", "eval", "predict", "recommend", "validation", "softmax", "recipe_cost", "large_1m_items",
              "bucketed", "stream_predict"):
    if isinstance(doc.get(key), dict) and "error" in doc[key]:
      lines += [f"Suite `{key}` failed: `{doc.pop(key)['error'].splitlines()[-1]}`", ""]
  if "prepare" in doc:
    loads = all("load_seconds" in r for r in doc["prepare"])
    lines += ["### Preparation (NumPy, fresh process per run)", "",
              "| interactions | users | items | seconds | peak RSS (MB) |"
              + (" artifact (MB) | load + splits (s) | private memory of load + splits (MB) | the same, arrays copied (MB) |"
                 if loads else ""),
              "|---:|---:|---:|---:|---:|" + ("---:|---:|---:|---:|" if loads else "")]
    lines += [f"| {r['interactions']:,} | {r['users']:,} | {r['items']:,} | {r['seconds']:.2f} | {r['peak_rss_mb']:,.0f} |"
              + (f" {r['artifact_mb']:,} | {r['load_seconds']:.2f} | {r['load_private_mb']:,} |"
                 f" {r.get('load_private_mb_copied', '–')} |" if loads else "")
              for r in doc["prepare"]]
    if loads:
      lines += ["", "Load + splits: a fresh process loads the artifact (memory-mapped), splits off the held-out"
                " items (views) and builds one half of the users' evaluation windows; private memory is the"
                " growth of its anonymous RSS (the mapped file's pages are shared page cache). \"Arrays copied\":"
                " the same steps with the arrays read into memory and the splits copied, as loading worked"
                " before the artifact was memory-mapped."]
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
  if "recommend" in doc:
    lines += ["### `Recommender.recommend` (Python API, top-10, history excluded)", "",
              "| shape | len | items | one history p50 (ms) | one history p99 (ms) | first pass, compiles included (s) |"
              " histories | seconds | histories/s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {n} | {r['max_seq_length']} | {r['num_items']:,} | {r['one_history_ms_p50']:.2f} |"
              f" {r['one_history_ms_p99']:.2f} | {r['first_pass_seconds_incl_compile']:.1f} | {r['histories']:,} |"
              f" {r['seconds']:.2f} | {r['histories_per_second']:,} |" for n, r in doc["recommend"].items()]
    lines += ["", "One history: latency of a call with one history, over the histories of the first pass (which "
              "compiled each input width it met), repeated once compiled. Throughput: one call with every "
              "history (batched shortest-first, each batch cut to the window its longest history needs).", ""]
  if "validation" in doc:
    lines += ["### Periodic validation inside training, per shipped config (target: under 10% of the run)", "",
              "| config | data | steps | validated every | validations | users | step (s) | one validation (s) |"
              " validation's share | with compilation |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, r in doc["validation"].items():
      if "skipped" in r or "error" in r:
        lines.append(_not_run_row(n, r, 10))
        continue
      lines.append(f"| {r['config']} ({r.get('task', '')}) | {r['data']} | {r['num_train_steps']:,} | {r['eval_every_steps']:,} |"
                   f" {r['validations']} | {r['validated_users']:,} | {r['step_seconds']:.3f} |"
                   f" {r['validation_seconds']:.2f} | {100 * r['validation_share']:.1f}% |"
                   f" {100 * r['validation_share_incl_compilation']:.1f}% |")
    lines += ["", "Share: validations x one validation over the run's steps x the median step plus those validations "
              "(each step width compiled first); with compilation: the first validation's and the timed steps' "
              "compile time added. Each trained model's measured share is in its results JSON (`training_time`).",
              ""]
  if "softmax" in doc:
    lines += ["### The output layer alone: logsumexp over the columns, forward and backward (hidden 64)", "",
              "| rows (targets) | columns (items or negatives) | seconds | GFLOP/s of its matrix products |",
              "|---:|---:|---:|---:|"]
    lines += [f"| {r['rows']:,} | {r['columns']:,} | {r['seconds']:.3f} | {r['gflop_per_second']:.1f} |"
              for r in doc["softmax"].values()]
    lines.append("")
  if "recipe_cost" in doc:
    lines += recipe_cost_lines(doc["recipe_cost"])
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
  if "bucketed" in doc:
    lines += ["### Inputs larger than memory (`data.chunk_rows`: read in chunks, bucketed by user on disk; fresh process)",
              "", "| interactions | users | items | input Parquet (MB) | chunk rows | buckets | seconds | peak RSS (MB) |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['interactions']:,} | {r['users']:,} | {r['items']:,} | {r['input_parquet_mb']:,} |"
              f" {r['chunk_rows']:,} | {r['num_buckets']} | {r['seconds']:.1f} | {r['peak_rss_mb']:,} |"
              for r in doc["bucketed"]]
    lines.append("")
  if "stream_predict" in doc:
    r = doc["stream_predict"]
    lines += ["### Inference for millions of users, streamed to Parquet parts (fresh process)", "",
              "| users | items | len | hidden | Parquet parts | output (MB) | seconds | users/s |"
              " peak RSS before predicting (MB) | peak RSS (MB) |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
              f"| {r['users']:,} | {r['num_items']:,} | {r['max_seq_length']} | {r['hidden_size']} | {r['parquet_parts']} |"
              f" {r['output_mb']:,} | {r['seconds']:,.0f} | {r['users_per_second']:,} |"
              f" {r['peak_rss_mb_before_predicting']:,} | {r['peak_rss_mb']:,} |", ""]
  return "\n".join(lines)


def _not_run_row(name: str, row: dict, columns: int) -> str:
  """A table row for a suite entry that was skipped or failed: its name, why, and empty cells."""
  return f"| {name} | {row.get('skipped') or row.get('error')} |" + " |" * (columns - 2)


def recipe_cost_lines(rows: dict) -> list:
  """The recipe's steps measured against its time estimate (the budget's cut), one row per data and model."""
  slots = any("target_slots_per_step" in r for r in rows.values())  # files since the estimate counts slots
  lines = ["### The recipe's steps against its time estimate (configs/default.py, what it chose from the data)", "",
           "| data | model | items | softmax | budget | steps | mean width timed |"
           + (" target slots a step |" if slots else "") + " step (s) | estimated (s) |"
           " measured / estimated | estimated GFLOP a step (encoder share) | estimated min per 300k |",
           "|---|---|---:|---|---:|---:|---:|" + ("---:|" if slots else "") + "---:|---:|---:|---:|---:|"]
  for name, r in rows.items():
    if "skipped" in r or "error" in r:
      lines.append(_not_run_row(name, r, 13 if slots else 12))
      continue
    lines.append(f"| {r['data']} | {r['kind']} | {r['num_items']:,} | {r['loss']} | {r['budget_per_interaction']:g} |"
                 f" {r['num_train_steps']:,} | {r['mean_width_of_timed_steps']:g} |"
                 + (f" {r['target_slots_per_step']:,.0f} |" if slots else "") +
                 f" {r['step_seconds']:.3f} |"
                 f" {r['estimated_step_seconds']:.3f} | {r['measured_over_estimated']:.2f} |"
                 f" {r['estimated_gflop_per_step']:.1f} ({100 * r.get('estimated_encoder_share_of_flops', 0):.0f}%) |"
                 f" {r['estimated_minutes_per_300k_training_interactions']:.1f} |")
  how = ("`recipe.step_seconds` at each timed step's width and target slots (the output layer's, over its "
         "losses); estimated minutes per 300k: the chosen steps at the recipe's planned estimate "
         "(`recipe.position_seconds`)" if slots else
         "`recipe.position_seconds` at each timed step's width (the estimate of that time, which counted an "
         "epoch's mean targets, not the slots a step computes); estimated minutes per 300k: the chosen steps at "
         "the estimate")
  lines += ["", "Step: the median over repeats of the timed steps' mean (batches made inside the timing, after a "
            f"first pass that compiled their widths); estimated: {how}, per 300k training "
            "interactions (the budget plans for 80).", ""]
  return lines


def headline_lines(doc: dict) -> list:
  """The two questions of a compare_recbole.py document with a headline (2026-12 and later)."""
  a, b, base = doc["headline"]["recbole_best"], doc["headline"]["markov"], doc["baselines"]

  def secs(x):
    return "not within its run" if x is None else f"{x:.0f} s"
  lines = ["", "Baselines on the same test split, fitted on the same training sequences (full NDCG@10 / HR@10; history"
           " excluded in brackets):", "", "| baseline | NDCG@10 | HR@10 |", "|---|---:|---:|"]
  for kind, name in (("most_popular", "most popular"), ("markov", "Markov chain")):
    x = base[kind]
    lines.append(f"| {name} | {x['ndcg@10']:.4f} ({x['ndcg@10_history_excluded']:.4f}) |"
                 f" {x['hr@10']:.4f} ({x['hr@10_history_excluded']:.4f}) |")
  lines += ["", f"(a) RecBole's best test NDCG@10 in its {a['recbole_budget_seconds'] / 60:.0f} min: {a['ndcg@10']:.4f}, first"
            f" reached at {a['recbole_train_seconds']:.0f} s, {'above' if a['above_most_popular'] else '**not above**'}"
            f" most-popular's {a['most_popular_ndcg@10']:.4f}. Ours first reaches it at {secs(a['ours_train_seconds'])}"
            + (f" ({a['speedup']:.1f}x)" if a["speedup"] else "") + f" and holds it from {secs(a['ours_held_from_seconds'])}"
            + (f" ({a['speedup_held']:.1f}x)" if a["speedup_held"] else "") + ".",
            "", f"(b) The Markov chain's test NDCG@10, {b['ndcg@10']:.4f}: ours "
            + ("does not reach it within its run" if b["ours_train_seconds"] is None else
               f"first reaches it at {secs(b['ours_train_seconds'])} and holds it from {secs(b['ours_held_from_seconds'])}")
            + "; RecBole "
            + (f"reaches it at {b['recbole_train_seconds']:.0f} s." if b["recbole_reaches"] else
               f"does not reach it in its {a['recbole_budget_seconds'] / 60:.0f} min.")
            + f" (Ours ran {doc['headline']['ours_horizon_seconds']:.0f} s of training clock.)"]
  return lines


def recbole_section(doc: dict) -> str:
  """A document of experiments/compare_recbole.py."""
  d, t, m, rb, ours = doc["data"], doc["throughput_identical_shapes"], doc["peak_rss_mb"], doc["recbole"], doc["ours"]
  sh = doc["shape"]
  overrides = ours.get("settings", {}).get("overrides") or []
  recipe = ours.get("settings", {}).get("config") == "recipe"
  budget = rb["curve"][-1]["train_seconds"] / 60
  ours_what = ("with configs/default.py's recipe" + (" and " + ", ".join(overrides) if overrides else "") if recipe
               else "with " + ", ".join(overrides) if overrides else "with configs/default.py base() as is")
  lines = [f"## Side by side with RecBole {rb['recbole_version']} (torch {rb['torch']}), {cores(doc)},"
           f" RecBole {budget:.0f} min, ours {ours_what}",
           "", f"Command: `{doc['command']}` ({doc['date']})" + (
               "" if "args" in doc or recipe else  # runs of base() from before the script's defaults changed
               ", with that date's defaults of the script, since changed: RecBole's budget and our settings are"
               " the title's (today `--recbole_minutes`, `--ours_settings=base`, and for base() as is"
               " `--set=train.warmup_seq_length=0`)") + ".", "",
           f"Data: {d['file']}, {d['users']:,} users, {d['items']:,} items, {d['interactions']:,} interactions,"
           " leave-one-out. Both models: hidden 64, inner 256, 2 layers, 2 heads,"
           f" length {sh['max_seq_length']}, batch {sh['batch_size']}, mask ratio 0.2 ({sh['mask_slots']} mask slots).", "",
           "| figure | RecBole | ours | ratio |", "|---|---:|---:|---:|",
           f"| sequences/s, identical shapes | {t['recbole_sequences_per_second']:,.1f} |"
           f" {t['ours_sequences_per_second']:,.1f} | {t['ratio']:.2f}x |",
           f"| tokens/s, identical shapes | {t['recbole_tokens_per_second']:,} | {t['ours_tokens_per_second']:,} |"
           f" {t['ours_tokens_per_second'] / t['recbole_tokens_per_second']:.2f}x |",
           f"| peak RSS of the whole run (MB) | {m['recbole']:,} | {m['ours']:,} | {m['ratio']:.2f}x |",
           f"| data preparation (s) | {rb['prepare_seconds']} | {ours['prepare_seconds']} | |",
           f"| training examples per epoch | {rb['training_examples_per_epoch']:,} (every prefix) |"
           f" {ours['training_examples_per_epoch']:,} (one window per user) | |", "",
           "Time to quality (training clock; evaluation and preparation excluded; test split, full ranking"
           " without history exclusion, RecBole's protocol for sequential models):", "",
           "| RecBole trained for (s) | its test NDCG@10 | ours first reaches it (s) | speed-up |"
           " ours holds it from (s) | speed-up |",
           "|---:|---:|---:|---:|---:|---:|"]

  def cell(seconds, speedup):
    return (f"{seconds:.0f} | {speedup:.1f}x" if seconds is not None and speedup else "not reached | –")
  for r in doc["time_to_quality"]:
    held = cell(r.get("ours_held_from_seconds"), r.get("speedup_held")) if "speedup_held" in r else "– | –"
    lines.append(f"| {r['recbole_train_seconds']:.0f} | {r['recbole_ndcg@10']:.4f} |"
                 f" {cell(r['ours_train_seconds'], r['speedup'])} | {held} |")
  final = doc["time_to_quality"][-1]
  settings = ours.get("settings", {}).get("overrides") or []
  lines += ["", "\"First reaches\" is the first evaluation at or above RecBole's figure; \"holds it from\" the first"
            " one after which ours never fell below it again in its run (early peaks can be transient)."]
  if "headline" in doc:
    lines += headline_lines(doc)
  if recipe:
    lines += ["", "Our training settings: configs/default.py's recipe at RecBole's model size, what it leaves to the data"
              " chosen from the training sequences: " + "; ".join(f"`{x.split(':')[0]}`" for x in ours["settings"]["from_the_data"])
              + (" (then " + ", ".join(f"`{x}`" for x in settings) + ")" if settings else "") + "."]
  else:
    lines += ["", f"Our training settings: configs/default.py base(){' with ' + ', '.join(f'`{x}`' for x in settings) if settings else ''}."]
  speed = (f"time to RecBole's {final['recbole_train_seconds'] / 60:.0f}-minute quality {final['speedup'] or 0:.1f}x faster at the"
           " first crossing" + (f", {final['speedup_held'] or 0:.1f}x to hold it" if "speedup_held" in final else ""))
  if "headline" in doc:
    a = doc["headline"]["recbole_best"]
    speed = (f"time to RecBole's best quality {a['speedup'] or 0:.1f}x faster at the first crossing, {a['speedup_held'] or 0:.1f}x"
             f" to hold it ({'above' if a['above_most_popular'] else 'not above'} most-popular)")
  lines += ["", "Against the project's targets: tokens/s on identical shapes "
            f"{t['ours_tokens_per_second'] / t['recbole_tokens_per_second']:.2f}x (target >= 1.5x), peak RSS "
            f"{m['ratio']:.2f}x (target <= 0.5x), {speed} (target >= 10x)."]
  best = max(ours["curve"], key=lambda r: r["ndcg@10"])
  lines += ["", f"Ours at the end of its run: step {ours['curve'][-1]['steps']}, {ours['curve'][-1]['train_seconds']:.0f} s,"
            f" test NDCG@10 {ours['curve'][-1]['ndcg@10']:.4f} (history excluded:"
            f" {ours['curve'][-1]['ndcg@10_history_excluded']:.4f}); best {best['ndcg@10']:.4f}.", ""]
  return "\n".join(lines)


def time_to_quality_section(doc: dict) -> str:
  """A document of experiments/time_to_quality.py: one line per row, then each row's curve."""
  name = {"ml1m": "MovieLens-1M", "beauty": "Amazon Beauty"}.get(doc["dataset"], doc["dataset"])
  lines = [f"## Time to quality, {name}, {doc.get('device', 'no device')}", "", f"Command: `{doc['command']}` ({doc['date']})", ""]
  if "skipped" in doc:
    return "\n".join(lines + [f"Skipped: {doc['skipped']}.", ""])
  d, base, th = doc["data"], doc["baselines"], doc["thresholds"]
  lines += [f"Data: {d['file']}, {d['users']:,} users, {d['items']:,} items, train_val_test. Every row trains from scratch"
            f" for at most {doc['budget_seconds']:g} s of training wall-clock, compilation included; every"
            f" {doc['eval_every_seconds']:g} s of it, validation and test are scored in full (not on the clock). The model"
            " shipped at each moment is the one with the best validation NDCG@10 so far; test figures are that model's."
            f" For scale: Markov chain test NDCG@10 {base['markov']['test_ndcg@10']:.4f}, most popular"
            f" {base['most_popular']['test_ndcg@10']:.4f}.", "",
            "| row | what | trained (s) | steps | schedule ended | compile (s) | chosen step | its test NDCG@10 | its test HR@10 | "
            + " | ".join(f"s to {x:g}" for x in th) + " |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|" + "---:|" * len(th)]
  for name_, r in doc["rows"].items():
    f = r["final"] or {}
    to = " | ".join("–" if r["seconds_to"][f"{x:g}"] is None else f"{r['seconds_to'][f'{x:g}']:.0f}" for x in th)
    lines.append(f"| {name_} | {r['description']} | {r['train_seconds']:.0f} | {r['steps']:,} |"
                 f" {'yes' if r['schedule_finished'] else 'no'} | {r['compile_seconds']:.1f} | {f.get('selected_step', 0):,} |"
                 f" {f.get('selected_test_ndcg@10', 0):.4f} | {f.get('selected_test_hr@10', 0):.4f} | {to} |")
  lines += ["", "Curves (seconds of training: test NDCG@10 of the model validation chose by then):", ""]
  for name_, r in doc["rows"].items():
    lines.append(f"- {name_}: " + ", ".join(f"{c['seconds']:.0f} s: {c['selected_test_ndcg@10']:.4f}" for c in r["curve"]))
  return "\n".join(lines + [""])


def ours_alone_section(doc: dict) -> str:
  """A document of experiments/compare_recbole.py --ours_only: our curve alone on one split."""
  d, ours, split = doc["data"], doc["ours"], doc["split"]
  st = ours["settings"]
  overrides = st.get("overrides") or []
  what = ("configs/default.py's recipe" if st.get("config") == "recipe" else "configs/default.py base()") + (
      " with " + ", ".join(f"`{x}`" for x in overrides) if overrides else " as is")
  lines = [f"## Ours alone on the {split} split, {cores(doc)}: {what}", "",
           f"Command: `{doc['command']}` ({doc['date']})", "",
           f"Data: {d['file']}, {d['users']:,} users, {d['items']:,} items, {d['interactions']:,} interactions,"
           f" leave-one-out; full ranking of the {split} split without history exclusion (history excluded beside"
           " it). Training clock only (evaluation excluded); " + (
               "what the recipe chose from the data: " + "; ".join(f"`{x.split(':')[0]}`" for x in st["from_the_data"])
               if st.get("from_the_data") else "no settings chosen from the data") + ".", "",
           f"| training (s) | step | {split} NDCG@10 | history excluded |", "|---:|---:|---:|---:|"]
  lines += [f"| {r['train_seconds']:.0f} | {r['steps']:,} | {r['ndcg@10']:.4f} | {r['ndcg@10_history_excluded']:.4f} |"
            for r in ours["curve"]]
  b = ours["baselines"]
  lines += ["", f"Same split and protocol: most-popular {b['most_popular']['ndcg@10']:.4f}, Markov chain"
            f" {b['markov']['ndcg@10']:.4f}. Peak RSS of the whole run {ours['peak_rss_mb']:,} MB; first step"
            f" (compilation) {ours['compile_seconds']:.1f} s.", ""]
  return "\n".join(lines)


def main(paths):
  docs = [json.load(open(p)) for p in paths]
  out = ["# Benchmarks", "",
         "Produced by `experiments/benchmark.py` (one JSON document per run) and turned into this page by",
         f"`python experiments/benchmark_table.py {' '.join(paths)} > docs/benchmarks.md` on {datetime.date.today().isoformat()}.",
         "Synthetic data with the real sets' shapes (users, items, length distribution); see the",
         "docstring of `experiments/benchmark.py` for what each suite measures.", ""]
  for doc in docs:
    if "split" in doc and "ours" in doc and "recbole" not in doc:
      out.append(ours_alone_section(doc))
      continue
    if "throughput_identical_shapes" in doc:
      out.append(recbole_section(doc))
      continue
    if "budget_seconds" in doc and "dataset" in doc:
      out.append(time_to_quality_section(doc))
      continue
    d = doc["devices"]
    title = (f"CPU, {doc['cpu_count']} cores" if d["platform"] == "cpu" else f"{d['kind']} x {d['count']}")
    title += f" ({' '.join(doc['overrides'])})" if doc["overrides"] else ""
    out.append(section(doc, title))
  print("\n".join(out))


if __name__ == "__main__":
  main(sys.argv[1:])
