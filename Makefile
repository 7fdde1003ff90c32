# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates .venv if missing and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch for this build machine and CI; GPU users install their CUDA wheel
# before `pip install batchmt` (README: "Running on GPUs").
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= configs/demo.yaml

.PHONY: demo test lint install install-test clean chromium faults

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(VENV)/bin/batchmt run $(CONFIG)

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Headless Chromium for the report test (Debian's package, installed only when missing and
# only as root; the test skips, saying why, where it cannot be had).
chromium:
	-sh tools/ensure_chromium.sh

test: install-test lint chromium
	$(VENV)/bin/python -m pytest

# The fault suite (tests/faults/, ~10 minutes on 2 cores; not part of `make test`): killed
# replicas and drivers, racing drivers, 5 % S3 errors, a node removed. Replay a run with
# `make faults BATCHMT_FAULT_SEED=<seed it printed>`.
faults: install-test
	BATCHMT_FAULTS=1 BATCHMT_FAULT_SEED=$(BATCHMT_FAULT_SEED) $(VENV)/bin/python -m pytest -s -q tests/faults

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
