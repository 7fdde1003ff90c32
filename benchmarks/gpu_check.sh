#!/usr/bin/env bash
# The issue #11 race on one GPU, from one script (UNRUN: no GPU was lent when it was written).
# CTranslate2 float16 and int8_float16 (raw translate_batch and batchmt's engine), beside HF
# generate and our transformers engine; then the CTranslate2 tests on the GPU build.
#   benchmarks/gpu_check.sh [--limit 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" - <<'PY'
import ctranslate2, torch
assert torch.cuda.is_available(), "torch sees no GPU"
assert ctranslate2.get_cuda_device_count() > 0, "this ctranslate2 build sees no GPU"
print("cuda compute types:", sorted(ctranslate2.get_supported_compute_types("cuda")))
PY
export BATCHMT_CACHE=${BATCHMT_CACHE:-$(mktemp -d)}
"$PY" -m benchmarks.throughput --device cuda --rounds 3 "$@"
"$PY" -m pytest -q tests/workers/test_ctranslate2.py
