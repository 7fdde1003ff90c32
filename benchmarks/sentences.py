"""Sentence segmenters on the hand-checked paragraphs (tests/fixtures/sentences.jsonl).

For each candidate: paragraphs split exactly where a reader would, per language, and the
wrong cuts (a boundary the reader does not make: the costly error, a broken sentence in
the output) and missed cuts over all paragraphs; plus time on a long English text (126 kB).

    python -m benchmarks.sentences            # pysbd is measured when it is installed
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "fixtures" / "sentences.jsonl"
# The splitter this project used before (workers/splitting.py, issue #16).
_OLD = re.compile(r"(?<=[.!?;…。！？；؟।])[\"'”’»)\]]*\s+|(?<=[。！？；])")

Splitter = Callable[[str, str], list[str]]


def _old(text: str, lang: str) -> list[str]:
    out, start = [], 0
    for m in _OLD.finditer(text):
        if m.start() > start:
            out.append(text[start : m.start()])
            start = m.end()
    return [*out, text[start:]] if start < len(text) else out


def _ours(known: bool) -> Splitter:
    from batchmt.workers.sentences import split_sentences

    return lambda text, lang: [s for s, _ in split_sentences(text, lang if known else None)]


def _sentencex(known: bool) -> Splitter:
    import sentencex

    return lambda text, lang: [
        s.strip() for s in sentencex.segment(lang if known else "en", text) if s.strip()
    ]


def _pysbd() -> Splitter | None:
    try:
        import pysbd
    except ImportError:
        return None
    cache: dict[str, object] = {}

    def split(text: str, lang: str) -> list[str]:
        seg = cache.setdefault(lang, pysbd.Segmenter(language=lang, clean=False))
        return [s.strip() for s in seg.segment(text) if s.strip()]  # type: ignore[attr-defined]

    return split


def _cuts(sentences: list[str], text: str) -> set[int]:
    """Offsets (in `text` without whitespace) where each sentence after the first starts."""
    flat = re.sub(r"\s+", "", text)
    cuts, pos = set(), 0
    for s in sentences:
        pos = flat.find(re.sub(r"\s+", "", s), pos) + len(re.sub(r"\s+", "", s))
        cuts.add(pos)
    cuts.discard(len(flat))
    return cuts


def main() -> None:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    candidates: dict[str, Splitter | None] = {
        "old regex": _old,
        "pysbd 0.3.4 (lang)": _pysbd(),
        "sentencex (lang)": _sentencex(True),
        "sentencex (en)": _sentencex(False),
        "ours (lang)": _ours(True),
        "ours (lang unknown)": _ours(False),
    }
    langs = sorted({r["lang"] for r in rows})
    long_text = " ".join(r["text"] for r in rows if r["lang"] == "en") * 120
    print(f"{len(rows)} paragraphs; long text {len(long_text) / 1000:.0f} kB (English)")
    head = " ".join(f"{lang:>6}" for lang in langs)
    print(f"{'segmenter':22} {head} {'exact':>6} {'wrong':>6} {'missed':>6} {'long s':>8}")
    for name, split in candidates.items():
        if split is None:
            print(f"{name:22} (not installed)")
            continue
        exact = dict.fromkeys(langs, 0)
        wrong = missed = 0
        for r in rows:
            want = _cuts(r["sentences"], r["text"])
            got = _cuts(split(r["text"], r["lang"]), r["text"])
            exact[r["lang"]] += want == got
            wrong += len(got - want)
            missed += len(want - got)
        start = time.perf_counter()
        split(long_text, "en")
        took = time.perf_counter() - start
        per_lang = " ".join(
            f"{exact[lang]:>3}/{sum(r['lang'] == lang for r in rows):<2}" for lang in langs
        )
        total = sum(exact.values())
        print(f"{name:22} {per_lang} {total:>6} {wrong:>6} {missed:>6} {took:8.2f}")


if __name__ == "__main__":
    main()
