# Quick start: `make run` trains and evaluates on the built-in synthetic dataset;
# `make test` runs the test suite. Both create (or reuse) .venv and install the project with the
# exact versions of requirements.lock (the versions the suite passed with); `make test-latest`
# runs the suite in .venv-latest with the newest versions pyproject.toml allows.
PYTHON ?= python3
VENV ?= .venv
LATEST ?= .venv-latest
CONFIG ?= configs/synthetic.py
ARGS ?=

STAMP := $(VENV)/.installed

.PHONY: run test install test-latest lock clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c requirements.lock -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/python -m bert4rec_jax.main --config=$(CONFIG) $(ARGS)

# A worker that crashes fails the run at once (--max-worker-restart=0): a replaced worker can leave
# xdist waiting forever for tests it lost.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile --max-worker-restart=0 $(ARGS)

test-latest:
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[test]"
	$(LATEST)/bin/python -m pip freeze --exclude-editable > $(LATEST)/versions.txt
	$(LATEST)/bin/python -m pytest -n 2 --dist loadfile --max-worker-restart=0 $(ARGS)

# requirements.lock from an environment the suite has just passed in (default .venv).
lock:
	( sed -n '1,3p' requirements.lock; $(VENV)/bin/python -m pip freeze --exclude-editable | grep -v -i '^bert4rec' ) > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) $(LATEST) projects wandb
