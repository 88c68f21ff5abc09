"""The package as `pip install <project>` (not editable) leaves it, in a throwaway virtualenv outside
the checkout: the commands, the shipped configs by name, no top-level `configs` package, and a
data folder default that belongs to the user, not to site-packages."""
import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("bert4rec-jax", "bert4rec-sweep", "bert4rec-compare", "bert4rec-record", "bert4rec-reproduce",
            "bert4rec-benchmark", "bert4rec-dev-subset", "bert4rec-plot")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """A venv holding only the project's wheel; its dependencies come from this environment's
  site-packages through a .pth file (so no download, and none of this checkout on its path)."""
  root = tmp_path_factory.mktemp("packaged")
  source = root / "source"  # a copy: building leaves build/ and *.egg-info beside the sources it read
  source.mkdir()
  for name in ("pyproject.toml", "setup.cfg", "README.md", "bert4rec_jax", "configs", "experiments"):
    (shutil.copytree if os.path.isdir(os.path.join(REPO, name)) else shutil.copy)(
        os.path.join(REPO, name), source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                                    if os.path.isdir(os.path.join(REPO, name)) else {}))
  wheels = root / "wheels"
  build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
                         capture_output=True, text=True, timeout=600, cwd=root)
  assert build.returncode == 0, build.stdout + build.stderr
  (wheel,) = glob.glob(str(wheels / "*.whl"))
  venv = root / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
  python = str(venv / "bin" / "python")
  site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        capture_output=True, text=True, check=True).stdout.strip()
  with open(os.path.join(site, "_outer_dependencies.pth"), "w") as f:  # the dependencies, not the checkout
    f.write(sysconfig.get_paths()["purelib"] + "\n")
  install = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel],
                           capture_output=True, text=True, timeout=600)
  assert install.returncode == 0, install.stdout + install.stderr
  work = root / "work"
  work.mkdir()
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BERT4REC_DATA_DIR")}
  return {"python": python, "bin": str(venv / "bin"), "work": str(work), "env": env}


def run(installed, *cmd, timeout=600):
  first = os.path.join(installed["bin"], cmd[0]) if not cmd[0].startswith("/") else cmd[0]
  return subprocess.run([first, *cmd[1:]], capture_output=True, text=True, timeout=timeout, cwd=installed["work"],
                        env=installed["env"])


def test_the_installed_package_is_not_the_checkout(installed):
  out = run(installed, "python", "-c", "import bert4rec_jax, bert4rec_jax.configs.default as d; "
            "print(bert4rec_jax.__file__); print(d.DATA_DIR)")
  assert out.returncode == 0, out.stderr
  where, data_dir = out.stdout.split()
  assert not where.startswith(REPO) and "site-packages" in where
  assert data_dir == os.path.join(installed["work"], "data")  # the user's folder, not site-packages
  squat = run(installed, "python", "-c", "import configs")
  assert squat.returncode == 1 and "No module named 'configs'" in squat.stderr


def test_the_installed_reproduce_finds_the_shipped_configs(installed):
  """bert4rec-reproduce loads configs by dataset name: from the installed package, not a checkout."""
  out = run(installed, "bert4rec-reproduce", "--datasets=synthetic", "--workdir=rep", "--out=rep.md", "--bootstrap=0",
            "--set=train.num_train_steps=5", "--set=data.synthetic.num_users=200", "--set=wandb.mode=disabled",
            "--set=train.eval_every_steps=0", "--sweeps=sw")
  assert out.returncode == 0, out.stderr[-3000:]
  with open(os.path.join(installed["work"], "rep.md")) as f:
    assert "## synthetic" in f.read()
  unknown = run(installed, "bert4rec-reproduce", "--datasets=nosuch", "--out=rep2.md")
  assert unknown.returncode == 1 and unknown.stderr.strip().splitlines() == [
      "error: --datasets: no shipped config named 'nosuch' (configs/nosuch.py); give shipped configs' names, e.g. ml1m,beauty"]


def test_every_command_answers_help(installed):
  for command in COMMANDS:
    out = run(installed, command, "--help")
    assert out.returncode == 0, (command, out.stderr[-2000:])
    assert "usage" in out.stdout.lower() or "--config" in out.stdout, (command, out.stdout[:500])


def test_the_cli_trains_a_shipped_config_by_name(installed):
  out = run(installed, "bert4rec-jax", "--config=synthetic:tiny", "--workdir=proj",
            "--config.train.num_train_steps=10", "--config.train.eval_every_steps=0", "--mode=train")
  assert out.returncode == 0, out.stderr[-3000:]
  (name,) = os.listdir(os.path.join(installed["work"], "proj", "models"))
  assert name.startswith("bert4rec_") and f"model:   {os.path.join(installed['work'], 'proj', 'models', name)}" in out.stdout
  sweep = run(installed, "bert4rec-sweep", "recipe", "--report_only", "--workdir=sw")
  assert "recipe" in sweep.stdout + sweep.stderr  # the shipped sweep file, found by name
  # The other installed commands on that model, each doing its work (not only --help).
  compare = run(installed, "bert4rec-compare", "--workdir=proj", f"--models={name}", "--bootstrap=50", "--out=cmp.md")
  assert compare.returncode == 0, compare.stderr[-3000:]
  record = run(installed, "bert4rec-record", "--workdir=proj", f"--models={name}", "--out=rec")
  assert record.returncode == 0, record.stderr[-3000:]
  assert os.path.isfile(os.path.join(installed["work"], "rec", name, "record.json"))
  plot = run(installed, "bert4rec-plot", os.path.join("proj", "models", name), "--out=curves.png")
  assert plot.returncode == 0 and os.path.getsize(os.path.join(installed["work"], "curves.png")) > 0, plot.stderr[-3000:]
  with open(os.path.join(installed["work"], "rows.txt"), "w") as f:
    f.writelines(f"{u} {i}\n" for u in range(1, 31) for i in range(1 + u % 3, 8 + u % 3))
  subset = run(installed, "bert4rec-dev-subset", "--input=rows.txt", "--users=20", "--core=2", "--output=dev.txt")
  assert subset.returncode == 0 and json.loads(subset.stdout.strip().splitlines()[-1])["users"] == 20, subset.stderr
