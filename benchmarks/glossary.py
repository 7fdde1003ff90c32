"""Glossary-constrained decoding against unconstrained decoding, on the glossary dev sets.

For each set, the same rows in the same length-sorted token-budget batches, beam 4:
  HF generate     unconstrained, transformers' own beam search
  ours            unconstrained, our search loop (workers/decoding.py)
  ours+terms      our loop with every matched glossary term as a constraint
Reported: term adherence (check_terms), BLEU, decoding seconds, and the ratios the targets
name (adherence >= 99 %, BLEU >= unconstrained on the consistent set, time <= 1.3x).

    python -m benchmarks.glossary --limit 100            # quick
    python -m benchmarks.glossary                        # full sets (678 + 498 rows)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import sacrebleu
import torch

from batchmt.pipeline.glossary import Glossary, check_terms, parse_row_glossary
from batchmt.workers.batching import plan_batches
from batchmt.workers.engines.base import Segment
from batchmt.workers.engines.seq2seq import Seq2SeqEngine

REPO = Path(__file__).resolve().parents[1]
SETS = ("dev_consistent", "dev_override")


def load_rows(path: Path, limit: int | None) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return rows[:limit] if limit else rows


def make_engine(model_dir: str) -> Seq2SeqEngine:
    from benchmarks.common import demo_engine

    engine, _ = demo_engine(model_dir)
    assert isinstance(engine, Seq2SeqEngine)
    return engine


def run(
    engine: Seq2SeqEngine, configs: dict[str, tuple[list[Segment], str]], batches: list[list[int]]
) -> dict[str, tuple[list[str], float]]:
    """Every config on every batch, interleaved batch by batch, timed in process CPU seconds:
    on a machine shared with other jobs, wall time swings with their load, CPU time far less,
    and interleaving spreads what is left over all configs alike."""
    n = len(next(iter(configs.values()))[0])
    outputs = {name: [""] * n for name in configs}
    seconds = dict.fromkeys(configs, 0.0)
    for batch in batches:
        for name, (segments, decoder) in configs.items():
            engine.decoder = decoder
            start = time.process_time()
            texts = engine.translate_batch([segments[i] for i in batch])
            seconds[name] += time.process_time() - start
            for i, text in zip(batch, texts, strict=True):
                outputs[name][i] = text
    return {name: (outputs[name], seconds[name]) for name in configs}


def adherence(outputs: list[str], segments: list[Segment]) -> tuple[float, int]:
    hits = total = 0
    for text, segment in zip(outputs, segments, strict=True):
        found, _ = check_terms(text, segment.terms)
        hits += len(found)
        total += len(segment.terms)
    return (100.0 * hits / total if total else 100.0), total


def bench_set(engine: Seq2SeqEngine, path: Path, limit: int | None) -> None:
    rows = load_rows(path, limit)
    terms_per_row = []
    for row in rows:
        glossary = Glossary(parse_row_glossary(row["glossary"]))
        # One constraint per distinct pair, however often the source repeats the term.
        matches = glossary.match(str(row["source"]))
        terms_per_row.append(tuple(dict.fromkeys(m.pair for m in matches)))
    plain = [Segment(str(r["source"])) for r in rows]
    constrained = [Segment(str(r["source"]), terms=t) for r, t in zip(rows, terms_per_row)]
    refs = [str(r["reference"]) for r in rows]
    spec = engine.spec.decoding
    batches = plan_batches(
        engine.count_tokens([s.text for s in plain]), spec.max_batch_tokens, spec.max_batch_size
    )
    configs = {
        "HF generate": (plain, "hf"),
        "ours": (plain, "ours"),
        "ours+terms": (constrained, "ours"),
    }
    run(engine, configs, [list(range(min(8, len(plain))))])  # warm-up
    results = run(engine, configs, batches)
    matched = sum(len(t) for t in terms_per_row)
    listed = sum(len(r["glossary"]) for r in rows)  # type: ignore[arg-type]
    print(f"\n{path.name}: {len(rows)} rows, {matched}/{listed} glossary terms matched")
    print(f"{'run':<14} {'adherence %':>11} {'BLEU':>6} {'CPU s':>8} {'time ratio':>10}")
    base = results["HF generate"][1]
    for name, (outputs, seconds) in results.items():
        rate, _ = adherence(outputs, constrained)
        bleu = sacrebleu.corpus_bleu(outputs, [refs]).score
        print(f"{name:<14} {rate:>11.1f} {bleu:>6.2f} {seconds:>8.2f} {seconds / base:>9.2f}x")
    ours = results["ours"][1]
    print(f"constrained / ours unconstrained: {results['ours+terms'][1] / ours:.2f}x time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "demo-en-de"))
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine = make_engine(args.model)
    print(f"beam {engine.spec.decoding.num_beams}, CPU threads {args.threads}")
    for name in args.sets:
        bench_set(engine, args.data_dir / "glossary" / f"{name}.jsonl", args.limit)


if __name__ == "__main__":
    main()
