"""Glossary terms on the CTranslate2 path (issue #11): every row decoded free by
CTranslate2, rows that miss a term re-decoded by our constrained search.

For each glossary dev set, the same rows through the shard loop (`translate_rows`), once
without terms and once with each row's glossary, on one `CTranslate2Engine` (beam 4,
int8 by default). Reported: adherence (the shard loop's own check), BLEU, process CPU
seconds (interleaved rounds, best counts: the machine is shared) and the time ratio.

    python -m benchmarks.ct2_glossary --threads 2 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import sacrebleu
import torch

from batchmt.pipeline.results import RowResult
from batchmt.pipeline.text.glossary import Glossary, parse_row_glossary
from batchmt.workers.translate import RowInput, translate_rows

REPO = Path(__file__).resolve().parents[1]
SETS = ("dev_consistent", "dev_override")


def run_rows(engine: object, rows: list[RowInput]) -> tuple[list[RowResult], float]:
    start = time.process_time()
    results, _ = translate_rows(
        engine,  # type: ignore[arg-type]
        rows,
        target_lang="de",
        max_batch_tokens=4096,
        max_batch_size=64,
        formats_mode="text",
    )
    return results, time.process_time() - start


def bench_set(engine: object, path: Path, limit: int, rounds: int) -> None:
    data = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    data = data[:limit] if limit else data
    refs = [str(r["reference"]) for r in data]
    plain = [RowInput(str(r["source"])) for r in data]
    with_terms = [
        RowInput(str(r["source"]), glossary=Glossary(parse_row_glossary(r["glossary"])))
        for r in data
    ]
    best = {"no terms": 1e9, "terms": 1e9}
    outputs: dict[str, list[RowResult]] = {}
    for _ in range(rounds):
        for name, rows in (("no terms", plain), ("terms", with_terms)):
            outputs[name], seconds = run_rows(engine, rows)
            best[name] = min(best[name], seconds)
    hits = sum(len(r.glossary_hits or []) for r in outputs["terms"])
    total = hits + sum(len(r.glossary_missed or []) for r in outputs["terms"])
    plain_text = [r.translation or "" for r in outputs["no terms"]]
    term_text = [r.translation or "" for r in outputs["terms"]]
    changed = sum(a != b for a, b in zip(plain_text, term_text, strict=True))
    print(f"\n{path.name}: {len(data)} rows, {total} matched terms, {changed} rows re-decoded")
    print(f"{'run':<10} {'adherence':>10} {'BLEU':>6} {'CPU s':>7} {'ratio':>6}")
    for name, texts in (("no terms", plain_text), ("terms", term_text)):
        rate = f"{100.0 * hits / max(total, 1):.1f} %" if name == "terms" else "-"
        bleu = sacrebleu.corpus_bleu(texts, [refs]).score
        ratio = best[name] / best["no terms"]
        print(f"{name:<10} {rate:>10} {bleu:>6.2f} {best[name]:>7.2f} {ratio:>5.2f}x")


def main() -> None:
    from benchmarks.common import demo_engine

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "demo-en-de"))
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=0, help="first N rows (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quantization", default="int8")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine, run = demo_engine(
        args.model, quantization=args.quantization, backend="ctranslate2", terms=True
    )
    run(["A dog runs."])  # warm-up
    print(f"{engine.signature}, CPU threads {args.threads}")
    for name in args.sets:
        bench_set(engine, args.data_dir / "glossary" / f"{name}.jsonl", args.limit, args.rounds)


if __name__ == "__main__":
    main()
