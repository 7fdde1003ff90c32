"""Issue #15, finding 3: a row that breaks a step of the shard loop fails alone, with the
reason; its neighbours come back translated."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from batchmt.pipeline.status import FAILED, OK
from batchmt.workers import translate
from batchmt.workers.engines.base import Segment, Translation, TranslationEngine


class UpperEngine(TranslationEngine):
    max_input_tokens = 64
    signature: ClassVar[dict[str, str]] = {"model": "upper"}

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) + 1 for t in texts]

    def translate(self, segments: list[Segment], *, marked: bool = False) -> list[Translation]:
        return [Translation(s.text.upper()) for s in segments]


def run(texts: list[str | None]) -> list[translate.RowResult]:
    rows = [translate.RowInput(t) for t in texts]
    results, _ = translate.translate_rows(
        UpperEngine(), rows, target_lang="de", max_batch_tokens=256, max_batch_size=8
    )
    return results


def test_a_row_whose_markup_cannot_be_planned_fails_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    real = translate.prepare_formats

    def fragile(text: str, *args: Any, **kwargs: Any) -> Any:
        if "POISON" in text:
            raise RecursionError("maximum recursion depth exceeded")
        return real(text, *args, **kwargs)

    monkeypatch.setattr(translate, "prepare_formats", fragile)
    results = run(["a <b>dog</b> runs.", "<i>POISON</i> here", "a cat sits."])
    assert [r.status for r in results] == [OK, FAILED, OK]
    assert "could not prepare the row" in (results[1].error or "")
    assert results[0].translation == "A <b>DOG</b> RUNS."


def test_a_row_whose_markup_cannot_be_restored_fails_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    real = translate.restore_many

    def fragile(plans: list[Any], texts: list[list[str]], *args: Any) -> Any:
        if any("POISON" in t for row in texts for t in row):
            raise ValueError("unbalanced tags after restoring")
        return real(plans, texts, *args)

    monkeypatch.setattr(translate, "restore_many", fragile)
    results = run(["a <b>dog</b> runs.", "<i>POISON</i> here", "<u>a cat</u> sits."])
    assert [r.status for r in results] == [OK, FAILED, OK]
    assert "could not finish the row" in (results[1].error or "")
    assert "unbalanced tags" in (results[1].error or "")
