"""CTranslate2 vs transformers on the first target word (issue #23, finding 11).

The default backend (CTranslate2, through the worker's engine and batching) and
transformers' `generate` on the same checkpoint translate the Multi30k rows the demo model
never trained on (test_2016_flickr and val; `tools/train_demo` trains on `train` only).
Reported: the share of default-backend translations that start with a lowercase letter
where transformers' does not (a word fragment such as "r Zug fährt ...": German captions
start with a capital), how often the first target word differs, and BLEU of both.

    python -m benchmarks.first_token --limit 0          # every row (2,014)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import sacrebleu
import torch

from benchmarks.common import demo_engine
from benchmarks.throughput import hf_baseline

SPLITS = ("test_2016_flickr", "val")


def unseen_rows(data_dir: Path, limit: int) -> tuple[list[str], list[str]]:
    sources: list[str] = []
    refs: list[str] = []
    for split in SPLITS:
        base = data_dir / "multi30k" / split
        sources += (base.with_suffix(".en")).read_text(encoding="utf-8").splitlines()
        refs += (base.with_suffix(".de")).read_text(encoding="utf-8").splitlines()
    return (sources[:limit], refs[:limit]) if limit else (sources, refs)


def starts_lower(text: str) -> bool:
    return bool(text) and text[0].isalpha() and text[0].islower()


def first_word(text: str) -> str:
    return text.split(maxsplit=1)[0] if text.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/demo-en-de")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--limit", type=int, default=0, help="rows (0: all 2,014)")
    parser.add_argument("--quantization", default="none", help="none (the job default) or int8")
    parser.add_argument(
        "--reuse-generate",
        type=Path,
        help="a JSON file for transformers' translations: read if it exists, else written "
        "(they do not change with the conversion, and take minutes on CPU)",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    sources, refs = unseen_rows(args.data_dir, args.limit)

    started = time.perf_counter()
    _, ct2 = demo_engine(args.model, quantization=args.quantization, backend="ctranslate2")
    ours = ct2(sources)
    ct2_s = time.perf_counter() - started
    started = time.perf_counter()
    cached = args.reuse_generate
    if cached and cached.exists():
        theirs = json.loads(cached.read_text(encoding="utf-8"))[: len(sources)]
    else:
        theirs = hf_baseline(args.model, torch.device("cpu"))(sources)
        if cached:
            cached.write_text(json.dumps(theirs, ensure_ascii=False), encoding="utf-8")
    hf_s = time.perf_counter() - started

    fragments = [
        i
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
        if starts_lower(a) and not starts_lower(b)
    ]
    hf_lower = sum(starts_lower(b) for b in theirs)
    differ = sum(first_word(a) != first_word(b) for a, b in zip(ours, theirs, strict=True))
    n = len(sources)
    print(f"rows {n} ({', '.join(SPLITS)}), quantization {args.quantization}")
    print(
        f"CTranslate2 starts lowercase where transformers does not: {len(fragments)} "
        f"({100 * len(fragments) / n:.2f} %); transformers starts lowercase: {hf_lower}"
    )
    print(f"first word differs: {differ} ({100 * differ / n:.2f} %)")
    for i in fragments[:5]:
        print(f"  e.g. {ours[i]!r}  |  transformers: {theirs[i]!r}")
    bleu_ct2 = sacrebleu.corpus_bleu(ours, [refs]).score
    bleu_hf = sacrebleu.corpus_bleu(theirs, [refs]).score
    print(
        f"BLEU CTranslate2 {bleu_ct2:.2f} ({ct2_s:.0f} s), transformers {bleu_hf:.2f} "
        f"({hf_s:.0f} s)"
    )


if __name__ == "__main__":
    main()
