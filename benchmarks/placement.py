"""Forced glossary terms on the default backend (CTranslate2): where they land, how they
read, what they cost. `benchmarks/glossary.py --placement` runs this.

For an override set (dev_override, or one built by `benchmarks/override_set.py`), the same
rows through the shard loop (`translate_rows`, CTranslate2 int8, beam 4) three ways:
  free     no glossary
  before   terms, every row that misses one re-decoded by the constrained search (the
           path before issue #22: `engine.place_terms = False`)
  after    terms placed where the free output rendered the source term (placement.py),
           the constrained search only for what that cannot place
Reported per run: adherence, BLEU (forced output against references with the default
rendering swapped for the term, free output against the original references, on the rows
where every swap applies), terms appended as a sentence of their own or put in front of
it, stubs before a term, terms outside the span the source term aligns to (CTranslate2
attention), rows flagged `term_placement`, and process CPU seconds (best of interleaved
rounds) against free.
`--show N` prints N rows drawn at random (`--seed`, 22 by default) for reading by hand.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import sacrebleu

from batchmt.pipeline.text.glossary import Glossary, check_terms, parse_row_glossary, term_variants
from batchmt.pipeline.text.term_checks import (
    APPENDED,
    PREPENDED,
    STUB,
    strip_punctuation,
    term_fragments,
)
from batchmt.workers.translate import RowInput, RowResult, translate_rows


def _rows(path: Path, limit: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return rows[:limit] if limit else rows


def _translate(engine: Any, rows: list[RowInput]) -> tuple[list[RowResult], float]:
    start = time.process_time()
    results, _ = translate_rows(
        engine, rows, target_lang="de", max_batch_tokens=4096, max_batch_size=64,
        formats_mode="text",
    )  # fmt: skip
    return results, time.process_time() - start


def outside_span(engine: Any, sources: list[str], outputs: list[str],
                 terms: list[tuple[tuple[str, str], ...]]) -> tuple[int, int]:  # fmt: skip
    """(terms whose aligned target word does not hold the term, terms checked)."""
    links = engine.aligner()(sources, outputs)
    bad = total = 0
    for source, output, row_terms, link in zip(sources, outputs, terms, links, strict=True):
        words = [strip_punctuation(w).casefold() for w in source.split()]
        target_words = output.split()
        for src, tgt in row_terms:
            parts = src.casefold().split()
            at = next((k for k in range(len(words)) if words[k : k + len(parts)] == parts), None)
            if at is None or not target_words:
                continue
            total += 1
            word = target_words[link.best_target[at + len(parts) - 1]].casefold()
            if not any(f.casefold() in word for f in term_variants(tgt)):
                bad += 1
    return bad, total


def run(
    engine: Any, path: Path, limit: int, rounds: int, show: int, swap: Any, seed: int = 22
) -> None:
    data = _rows(path, limit)
    glossaries = [Glossary(parse_row_glossary(r["glossary"])) for r in data]
    terms = [tuple(dict.fromkeys(m.pair for m in g.match(str(r["source"]))))
             for g, r in zip(glossaries, data, strict=True)]  # fmt: skip
    plain = [RowInput(str(r["source"])) for r in data]
    forced = [RowInput(str(r["source"]), glossary=g) for r, g in zip(data, glossaries, strict=True)]
    runs = {"free": (plain, True), "before": (forced, False), "after": (forced, True)}
    best = dict.fromkeys(runs, float("inf"))
    outputs: dict[str, list[RowResult]] = {}
    _translate(engine, forced[:16])  # warm-up: learns the terms' default renderings
    for _ in range(rounds):
        for name, (rows, place) in runs.items():
            engine.place_terms = place
            outputs[name], seconds = _translate(engine, rows)
            best[name] = min(best[name], seconds)
    engine.place_terms = True
    for name in ("before", "after"):
        for row, result in zip(data, outputs[name], strict=True):
            if result.status not in ("ok", "ok_split"):
                print(f"{name} [{row['id']}] {result.status}: {result.error}")
    sources = [str(r["source"]) for r in data]
    refs = [str(r["reference"]) for r in data]
    free = [r.translation or "" for r in outputs["free"]]
    kept, swapped = swap(data, terms)
    free_bleu = sacrebleu.corpus_bleu([free[i] for i in kept], [[refs[i] for i in kept]]).score
    print(
        f"\n{path.name}: {len(data)} rows, {sum(map(len, terms))} terms; BLEU on the "
        f"{len(kept)} rows where every swap applies; free vs original refs {free_bleu:.2f}"
    )
    print(f"{'run':<7} {'adher.':>7} {'BLEU':>6} {'gap':>5} {'appended':>8} {'prepended':>9} "
          f"{'stubs':>5} {'outside':>8} {'flagged':>7} {'CPU s':>7} {'ratio':>6}")  # fmt: skip
    for name in ("before", "after"):
        texts = [r.translation or "" for r in outputs[name]]
        hits = sum(len(check_terms(t, ts)[0]) for t, ts in zip(texts, terms, strict=True))
        total = sum(map(len, terms))
        bleu = sacrebleu.corpus_bleu([texts[i] for i in kept], [swapped]).score
        frags = [term_fragments(s, t, [x for _, x in ts])
                 for s, t, ts in zip(sources, texts, terms, strict=True)]  # fmt: skip
        appended = sum(APPENDED in f for f in frags)
        stubs = sum(STUB in f for f in frags)
        prepended = sum(PREPENDED in f for f in frags)
        bad, checked = outside_span(engine, sources, texts, terms)
        flagged = sum(bool(getattr(r, "term_placement", False)) for r in outputs[name])
        ratio = best[name] / best["free"]
        print(f"{name:<7} {100.0 * hits / max(1, total):>6.1f}% {bleu:>6.2f} "
              f"{free_bleu - bleu:>5.2f} {appended:>8} {prepended:>9} {stubs:>5} "
              f"{bad:>4}/{checked:<3} {flagged:>7} {best[name]:>7.2f} {ratio:>5.2f}x")  # fmt: skip
    print(f"free CPU s {best['free']:.2f}")
    for i in sorted(random.Random(seed).sample(range(len(data)), min(show, len(data)))):
        print(f"\n[{data[i]['id']}] {sources[i]}  {dict(terms[i])}")
        print(f"  free:   {free[i]}")
        print(f"  before: {outputs['before'][i].translation}")
        print(f"  after:  {outputs['after'][i].translation}")
