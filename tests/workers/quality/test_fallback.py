"""The QE stage in the shard loop: every translated row assessed, flagged rows re-translated
once, the better candidate kept (ok_fallback), glossary guarantees kept for the fallback."""

from __future__ import annotations

from typing import ClassVar

from batchmt.pipeline.spec import spec_from_dict
from batchmt.pipeline.status import GLOSSARY_MISSED, OK, OK_FALLBACK
from batchmt.pipeline.text.glossary import Glossary
from batchmt.workers.engines.base import Segment, Translation, TranslationEngine
from batchmt.workers.quality.stage import QeStage
from batchmt.workers.translate import RowInput, translate_rows

GOOD = {
    "A dog runs in the park.": "Ein Hund rennt im Park.",
    "Two men play soccer on the grass.": "Zwei Männer spielen Fußball auf dem Rasen.",
}


class LoopEngine(TranslationEngine):
    """The first pass loops on every row (or copies it); the fallback copy translates.

    Confidence comes from `score`, not the decoder, so the stage's forced-decoding path is
    exercised too.
    """

    max_input_tokens = 64
    signature: ClassVar[dict[str, str]] = {"model": "loop"}

    def __init__(self, fixed: bool = False, drop_terms: bool = False) -> None:
        self.fixed = fixed
        self.drop_terms = drop_terms
        self.fallback_calls = 0

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) + 1 for t in texts]

    def translate(self, segments: list[Segment], *, marked: bool = False) -> list[Translation]:
        out = []
        for s in segments:
            if not self.fixed:
                out.append(Translation("Ein Hund Hund Hund Hund Hund Hund Hund Hund Hund Hund"))
                continue
            text = GOOD.get(s.text, s.text)
            if self.drop_terms:
                text = "Ein Köter rennt im Park."
            out.append(Translation(text, [t for _, t in s.terms if t not in text]))
        return out

    def score(self, segments: list[Segment], translations: list[str]) -> list[float | None]:
        return [-0.5 if t in GOOD.values() else -6.0 for t in translations]

    def fallback_engine(self, num_beams: int, no_repeat_ngram_size: int) -> TranslationEngine:
        self.fallback_calls += 1
        return LoopEngine(fixed=True, drop_terms=self.drop_terms)


def _spec(**quality: object) -> object:
    return spec_from_dict(
        {
            "source_lang": "en",
            "target_lang": "de",
            "input": {"path": "x"},
            "output": {"path": "y"},
            "model": {"name_or_path": "m"},
            "quality": quality,
        }
    )


def _run(engine: TranslationEngine, rows: list[RowInput], **quality: object) -> tuple:
    results, _ = translate_rows(
        engine, rows, target_lang="de", max_batch_tokens=256, max_batch_size=8, formats_mode="text"
    )
    stage = QeStage(engine, _spec(**quality), 256, lambda name: engine)  # type: ignore[arg-type]
    qes, counts = stage.run(rows, [r.text for r in rows], results)
    return results, qes, counts


def test_the_fallback_wins_on_a_looping_row_and_is_counted() -> None:
    rows = [RowInput(text) for text in GOOD]
    results, qes, counts = _run(LoopEngine(), rows)
    assert [r.status for r in results] == [OK_FALLBACK, OK_FALLBACK]
    assert [r.translation for r in results] == list(GOOD.values())
    assert all(q is not None and q.flags == [] for q in qes)
    assert "repeated_ngrams" in (results[0].error or "")  # says what the first one was
    assert (counts.checked, counts.flagged, counts.fallback_tried, counts.fallback_won) == (
        2, 0, 2, 2,
    )  # fmt: skip


def test_without_the_fallback_the_rows_stay_flagged() -> None:
    rows = [RowInput(text) for text in GOOD]
    results, qes, counts = _run(LoopEngine(), rows, fallback={"enabled": False})
    assert [r.status for r in results] == [OK, OK]
    assert all(q is not None and "repeated_ngrams" in q.flags for q in qes)
    assert (counts.flagged, counts.fallback_tried) == (2, 0)


def test_a_fallback_that_misses_a_glossary_term_never_wins() -> None:
    glossary = Glossary().with_row([{"source": "dog", "target": "Hund"}])
    rows = [RowInput("A dog runs in the park.", glossary=glossary)]
    results, _, counts = _run(LoopEngine(drop_terms=True), rows)
    assert results[0].status != OK_FALLBACK
    assert results[0].status in (OK, GLOSSARY_MISSED)
    assert counts.fallback_won == 0


def test_rows_not_translated_are_not_assessed() -> None:
    rows = [RowInput(None), RowInput("   ")]
    _, qes, counts = _run(LoopEngine(), rows)
    assert qes == [None, None] and counts.checked == 0
