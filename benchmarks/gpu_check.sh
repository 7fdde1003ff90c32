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
