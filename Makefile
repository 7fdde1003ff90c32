# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates .venv if missing and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch for this build machine and CI; GPU users install their CUDA wheel
# before `pip install batchmt` (README: "Running on GPUs").
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= configs/demo.yaml

.PHONY: demo test lint install install-test clean

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

test: install-test lint
	$(VENV)/bin/python -m pytest

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
