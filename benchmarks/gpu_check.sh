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

# Issue #25: `batchmt quantize` variants on the GPU (UNRUN: no GPU was lent when it was
# written). Quantizes the demo model on CPU (0.10x budget, Multi30k val), then the checkpoint,
# every uniform format and the plan through the worker's engine on cuda: tokens/s, resident
# weights (packed layers dequantize per call; no grouped int2/int3 kernel), BLEU.
QDIR=$(mktemp -d)
"$PY" - "$QDIR" <<'PY'
import sys, pyarrow as pa, pyarrow.parquet as pq
d = "../shared/data/multi30k/"
en, de = (open(d + f"val.{l}").read().splitlines() for l in ("en", "de"))
pq.write_table(pa.table({"text": en, "reference": de}), sys.argv[1] + "/val.parquet")
PY
printf 'source_lang: en\ntarget_lang: de\nmodel: {name_or_path: models/demo-en-de}\nquantize: {calibration: %s/val.parquet, max_size_ratio: 0.1, out: %s/q010}\n' "$QDIR" "$QDIR" > "$QDIR/q.yaml"
"$PY" -m batchmt.jobs.cli quantize "$QDIR/q.yaml" --no-progress
"$PY" -m benchmarks.quantize_variants --plan "$QDIR/q010" --pair en-de --limit 1000 --device cuda
