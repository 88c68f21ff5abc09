"""Fits the recipe's step-time rates to measured steps: the encoder's and the output layer's
floating-point rates and the seconds a step costs beside them (`recipe.CPU_ENCODER_FLOPS_PER_SECOND`,
`CPU_OUTPUT_FLOPS_PER_SECOND`, `CPU_STEP_SECONDS`), from the rows of `experiments/benchmark.py
--only=recipe_cost` files, each row's measured step against its estimated encoder and output-layer
work (`recipe.step_flops` at the timed steps' widths and target slots).

The fit is least squares on each row's relative error (a row of a fast step weighs as much as a
slow one): measured = encoder / R_e + output / R_o + S, linear in (1 / R_e, 1 / R_o, S). Prints
JSON: the rates, and every row's measured over estimated at the fitted rates and at the recipe's.

  python experiments/fit_step_rates.py docs/benchmarks/cpu_2core_recipe_cost_slots.json \
      docs/benchmarks/cpu_2core_recipe_cost_slots_full_softmax.json
"""
import argparse
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(REPO, "bert4rec_jax")):  # a checkout (installed: the package is importable)
  sys.path.insert(0, REPO)

NEEDED = ("step_seconds", "estimated_encoder_gflop_per_step", "estimated_output_gflop_per_step")


def rows_of(paths):
  """(name, row) of every recipe_cost row with the work split into encoder and output layer."""
  out = []
  for path in paths:
    try:
      with open(path) as f:
        doc = json.load(f)
    except (OSError, ValueError) as e:
      raise SystemExit(f"error: {path}: not a JSON document of experiments/benchmark.py ({e})")
    for name, row in doc.get("recipe_cost", {}).items():
      if all(k in row for k in NEEDED):
        out.append((f"{os.path.basename(path)}:{name}", row))
  if not out:
    raise SystemExit("no recipe_cost rows with estimated_encoder_gflop_per_step: rerun "
                     "`python experiments/benchmark.py --only=recipe_cost` with this version")
  return out


def fit(rows):
  """(R_e, R_o, S) minimising the squared relative errors of measured = E / R_e + O / R_o + S."""
  t = np.array([r["step_seconds"] for _, r in rows])
  e = np.array([r["estimated_encoder_gflop_per_step"] for _, r in rows]) * 1e9
  o = np.array([r["estimated_output_gflop_per_step"] for _, r in rows]) * 1e9
  design = np.stack([e / t, o / t, 1 / t], axis=1)
  x, *_ = np.linalg.lstsq(design, np.ones(len(t)), rcond=None)
  if (x <= 0).any():
    raise SystemExit(f"the fit gave a non-positive term ({x.tolist()}): the rows do not separate the "
                     "encoder, the output layer and the fixed cost; add rows that differ in each")
  return 1 / x[0], 1 / x[1], x[2]


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("files", nargs="+", help="recipe_cost JSON files of experiments/benchmark.py")
  args = ap.parse_args(argv)
  from bert4rec_jax import recipe
  rows = rows_of(args.files)
  rates = fit(rows)
  current = (recipe.CPU_ENCODER_FLOPS_PER_SECOND, recipe.CPU_OUTPUT_FLOPS_PER_SECOND, recipe.CPU_STEP_SECONDS)

  def ratio(row, r):
    return row["step_seconds"] / (row["estimated_encoder_gflop_per_step"] * 1e9 / r[0]
                                  + row["estimated_output_gflop_per_step"] * 1e9 / r[1] + r[2])

  print(json.dumps({
      "command": " ".join(["python", "experiments/fit_step_rates.py", *map(os.path.relpath, args.files)]),
      "fitted": {"encoder_gflop_per_second": round(rates[0] / 1e9, 2),
                 "output_gflop_per_second": round(rates[1] / 1e9, 2), "step_seconds": round(rates[2], 4)},
      "recipe": {"encoder_gflop_per_second": current[0] / 1e9, "output_gflop_per_second": current[1] / 1e9,
                 "step_seconds": current[2]},
      "rows": {name: {"step_seconds": row["step_seconds"],
                      "measured_over_estimated_fitted": round(ratio(row, rates), 3),
                      "measured_over_estimated_recipe": round(ratio(row, current), 3)} for name, row in rows},
  }, indent=1))


if __name__ == "__main__":
  main()
