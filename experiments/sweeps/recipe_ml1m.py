"""The recipe's rows on MovieLens-1M (docs/reproduction.md, issue 20 section 3): BERT4Rec and
SASRec with cross-entropy through the recipe alone (configs/default.py, nothing set but the data
file), three seeds each. The recipe chooses the budget from the data and its time target (on this
file 270 window positions per training interaction for BERT4Rec, its masked-item loss on one window
in 4, and 320 for SASRec-CE: each about 255 minutes of 2 AVX2 cores), so the seeds are for a lent
GPU, where the six runs take minutes:

  SWEEPS=recipe_ml1m SWEEP_MODELS=recipe_ml1m bash experiments/gpu_reproduce.sh 540

On a CPU (resumable; one run at a time on two cores):

  python experiments/sweep.py experiments/sweeps/recipe_ml1m.py

The data file is ml-1m.txt.gz in BERT4REC_DATA_DIR (on the GPU machine `.data`, carried with the
checkout). The budget the recipe chooses does not depend on the device (it prices a step's
estimated work at fixed CPU rates), so the models are the ones a CPU run of the same command
trains. The runs keep per-user ranks, so the models are recorded without evaluating them again:
unpack the parts at the repository root, then, with the same BERT4REC_DATA_DIR (a `.data` folder
holding the file), `python experiments/record_run.py --workdir=sweeps/recipe_ml1m --models=...
--out=docs/runs/recipe_ml1m`, then
`python experiments/compare_models.py --workdir=sweeps/recipe_ml1m
--models=<bert4rec seeds joined by +>,<sasrec seeds joined by +> --baselines
--out=docs/recipe_ml1m.md`. Nothing is chosen among the rows.
"""
import os

from bert4rec_jax.configs import default

CONFIG = "configs/default.py"
SETTINGS = {"wandb.mode": "disabled", "data.format": "text",
            "data.path": os.path.join(default.DATA_DIR, "ml-1m.txt.gz"), "eval.per_user_top_k": 10}
SEEDS = (0, 1, 2)
CHOOSE = False  # models side by side: no point is chosen among them


def sweep(add):
  for kind in ("bert4rec", "sasrec"):
    add(**{"model.kind": kind})
