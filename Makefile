# Quick start: `make run` trains and evaluates on the built-in synthetic dataset;
# `make test` runs the test suite. Both create (or reuse) .venv and install the project.
PYTHON ?= python3
VENV ?= .venv
CONFIG ?= configs/synthetic.py
ARGS ?=

STAMP := $(VENV)/.installed

.PHONY: run test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/python -m bert4rec_jax.main --config=$(CONFIG) $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile $(ARGS)

clean:
	rm -rf $(VENV) projects wandb
