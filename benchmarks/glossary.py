"""Glossary-constrained decoding against unconstrained decoding, on the glossary dev sets.

For each set, the same rows in the same length-sorted token-budget batches, beam 4:
  HF generate     unconstrained, transformers' own beam search
  ours            unconstrained, our search loop (workers/decoding.py)
  ours+terms      our loop with every matched glossary term as a constraint
Reported: term adherence (check_terms), BLEU, decoding seconds, and the ratios the targets
name (adherence 100 %, BLEU >= unconstrained on the consistent set, time <= 1.3x).

The override set forces renderings the model would not choose (dog -> Vierbeiner), so its
references are scored twice: the forced output against the references with the default
rendering swapped for the forced term (`default_renderings.tsv`: the first reference word
starting with a default form), next to the free output against the original references,
on the rows where every term's swap applies. Also reported there: the share of forced
terms whose default rendering still appears in the output (a word starting with a default
form: the term was bolted on beside the model's own rendering instead of replacing it).

    python -m benchmarks.glossary --limit 100            # quick
    python -m benchmarks.glossary                        # full sets (678 + 498 rows)
    python -m benchmarks.glossary --show 20              # and print 20 rows' outputs
    python -m benchmarks.glossary --placement --show 20 \
        --override-file out/glossary/test_2016_flickr_override.jsonl

`--placement`: the default backend (CTranslate2) on the override sets, before and after
term placement (#22): appended terms, stubs, terms outside the aligned span, BLEU against
swapped references, time against free decoding (`benchmarks/placement.py`).
"""

from __future__ import annotations

import argparse
import json
import time
import unicodedata
from pathlib import Path

import sacrebleu
import torch

from batchmt.pipeline.text.glossary import Glossary, check_terms, parse_row_glossary
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

    # Our search against HF generate on the same weights: the transformers backend (the
    # CTranslate2 backend's glossary rows are raced by benchmarks/ct2_glossary.py).
    engine, _ = demo_engine(model_dir, backend="transformers")
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


def load_defaults(path: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """default_renderings.tsv: source -> (forced target, default forms)."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    table = {}
    for line in lines:
        if line.strip():
            source, forced, forms = line.split("\t")
            table[source] = (forced, tuple(forms.split("|")))
    return table


def _words(text: str) -> list[str]:
    """Whitespace words without the punctuation around them."""
    out = []
    for word in text.split():
        start, end = 0, len(word)
        while start < end and unicodedata.category(word[start]).startswith("P"):
            start += 1
        while end > start and unicodedata.category(word[end - 1]).startswith("P"):
            end -= 1
        out.append(word[start:end])
    return out


def swap_reference(reference: str, forms: tuple[str, ...], forced: str) -> str | None:
    """The reference with its first word starting with a default form replaced by the
    forced term (punctuation around the word kept); None when no word does."""
    raw = reference.split()
    for i, word in enumerate(_words(reference)):
        if any(word.startswith(form) for form in forms):
            raw[i] = raw[i].replace(word, forced, 1)
            return " ".join(raw)
    return None


def has_default(text: str, forms: tuple[str, ...]) -> bool:
    return any(w.startswith(form) for w in _words(text) for form in forms)


def swapped_references(
    rows: list[dict[str, object]],
    terms_per_row: list[tuple[tuple[str, str], ...]],
    table_path: Path,
) -> tuple[list[int], list[str]]:
    """The rows where every term's swap applies, and their swapped references."""
    table = load_defaults(table_path)
    kept: list[int] = []
    swapped: list[str] = []
    for i, (row, terms_i) in enumerate(zip(rows, terms_per_row, strict=True)):
        reference: str | None = str(row["reference"])
        for source, target in terms_i:
            if reference is not None:
                reference = swap_reference(reference, table[source.casefold()][1], target)
        if reference is not None:
            kept.append(i)
            swapped.append(reference)
    return kept, swapped


def override_report(
    rows: list[dict[str, object]],
    terms_per_row: list[tuple[tuple[str, str], ...]],
    forced: list[str],
    free: list[str],
    table: dict[str, tuple[str, tuple[str, ...]]],
) -> None:
    swapped_refs: list[str] = []
    kept: list[int] = []
    terms = with_default = 0
    for i, (row, terms_i) in enumerate(zip(rows, terms_per_row, strict=True)):
        reference: str | None = str(row["reference"])
        for source, target in terms_i:
            forms = table[source.casefold()][1]
            terms += 1
            with_default += has_default(forced[i], forms)
            if reference is not None:
                reference = swap_reference(reference, forms, target)
        if reference is not None:
            kept.append(i)
            swapped_refs.append(reference)
    forced_bleu = sacrebleu.corpus_bleu([forced[i] for i in kept], [swapped_refs]).score
    originals = [str(rows[i]["reference"]) for i in kept]
    free_bleu = sacrebleu.corpus_bleu([free[i] for i in kept], [originals]).score
    share = 100.0 * with_default / terms if terms else 0.0
    print(
        f"override: {len(kept)} rows where every swap applies: forced vs swapped references "
        f"{forced_bleu:.2f} BLEU, free vs original references {free_bleu:.2f} BLEU "
        f"(gap {free_bleu - forced_bleu:.2f}); default rendering also in the forced output "
        f"for {with_default}/{terms} forced terms ({share:.1f} %)"
    )


def bench_set(
    engine: Seq2SeqEngine,
    path: Path,
    limit: int | None,
    show: int = 0,
) -> None:
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
    spec = engine.config.decoding
    batches = plan_batches(
        engine.count_tokens([s.text for s in plain]), spec.max_batch_tokens, spec.max_batch_size
    )
    configs = {
        "HF generate": (plain, "hf"),
        "ours": (plain, "ours"),
        "ours+terms": (constrained, "ours"),
    }
    run(engine, configs, [list(range(min(8, len(plain))))])  # warm-up
    # Learning the terms' default renderings is part of the constrained run's cost.
    engine.term_defaults.forget()
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
    table_path = path.parent / "default_renderings.tsv"
    if path.stem == "dev_override" and table_path.exists():
        table = load_defaults(table_path)
        override_report(rows, terms_per_row, results["ours+terms"][0], results["ours"][0], table)
    for i in range(min(show, len(rows))):
        print(f"\n[{rows[i]['id']}] {rows[i]['source']}  {dict(terms_per_row[i])}")
        print(f"  free:   {results['ours'][0][i]}")
        print(f"  forced: {results['ours+terms'][0][i]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "demo-en-de"))
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--show", type=int, default=0, help="print this many rows' outputs")
    parser.add_argument(
        "--no-defaults",
        action="store_true",
        help="constraints without default-rendering avoidance (the behaviour before #10)",
    )
    parser.add_argument(
        "--placement",
        action="store_true",
        help="CTranslate2, before/after term placement, on override sets",
    )
    parser.add_argument(
        "--override-file",
        type=Path,
        action="append",
        default=[],
        help="override sets for --placement (default: dev_override)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=22, help="--placement --show: the rows drawn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.placement:
        placement_main(args)
        return
    engine = make_engine(args.model)
    engine.term_defaults.enabled = not args.no_defaults
    print(f"beam {engine.config.decoding.num_beams}, CPU threads {args.threads}")
    for name in args.sets:
        bench_set(engine, args.data_dir / "glossary" / f"{name}.jsonl", args.limit, args.show)


def placement_main(args: argparse.Namespace) -> None:
    from functools import partial

    from benchmarks.common import demo_engine
    from benchmarks.placement import run as run_placement

    # terms=True: a job with glossary terms loads the constrained decoder at replica start.
    engine, _ = demo_engine(args.model, quantization="int8", backend="ctranslate2", terms=True)
    table = args.data_dir / "glossary" / "default_renderings.tsv"
    swap = partial(swapped_references, table_path=table)
    files = args.override_file or [args.data_dir / "glossary" / "dev_override.jsonl"]
    print(f"{engine.signature}, CPU threads {args.threads}")
    for path in files:
        run_placement(engine, path, args.limit or 0, args.rounds, args.show, swap, args.seed)


if __name__ == "__main__":
    main()
