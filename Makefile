# invnet: `make demo` (set up and run the main job) and `make test` (set up and run the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: setup demo test test-all lint bench clean

setup: $(VENV)/.installed

# torch is installed first, pinned, so nothing pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(VENV)/bin/invnet quickstart

test: setup
	$(VENV)/bin/pytest -q

test-all: setup
	$(VENV)/bin/pytest -q -m ''

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) benchmarks/env_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
