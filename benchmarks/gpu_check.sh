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

# Issue #21: the vLLM race on the GPU (UNRUN when written: no GPU was lent). A random-weight
# HunYuanDenseV1 with HY-MT1.5-1.8B's published dimensions (hidden 2048, 32 layers, 16 heads
# x 128, 4 KV heads, intermediate 6144, vocabulary 120,818), 256 Multi30k val rows, greedy,
# each row's bound source tokens + 32: raw `LLM.generate`, `batchmt run` with backend vllm,
# and with backend transformers; printed: seconds, output tokens/s of the raw run (one GPU),
# and the job/raw and vllm/transformers ratios. bf16, then FP8 (vLLM's dynamic FP8 weights
# via VLLM_RACE_QUANTIZATION=fp8 on the raw run only: the job takes FP8 from a released
# FP8 checkpoint, which a random model does not have; see the README's backend section).
# Needs the CUDA vLLM build beside batchmt: pip install 'batchmt[vllm]' (VLLM_PY overrides).
VLLM_PY=${VLLM_PY:-$PY}
if "$VLLM_PY" -c "import vllm" 2>/dev/null; then
  "$VLLM_PY" -m benchmarks.vllm_race --device cuda --hy-mt-1.8b --dtype bfloat16 --rows 256
  VLLM_RACE_QUANTIZATION=fp8 "$VLLM_PY" -m benchmarks.vllm_race --device cuda --hy-mt-1.8b \
    --dtype bfloat16 --rows 256 --skip-transformers
else
  echo "vllm race skipped: vLLM is not importable by $VLLM_PY (pip install 'batchmt[vllm]')"
fi
