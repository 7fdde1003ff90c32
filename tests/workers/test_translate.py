"""The shard translation loop against a rule-based engine: statuses, splitting, retries.

The engine here stands in for a model (it reverses words and fails on a poison word), so
the tests can state exactly what every row must come back as.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from batchmt.pipeline.status import EMPTY, FAILED, OK, OK_SPLIT
from batchmt.workers.engines.base import Segment, Translation, TranslationEngine
from batchmt.workers.translate import clean_text, translate_texts


class RuleEngine(TranslationEngine):
    """Reverses the words: an engine with only the required methods, base defaults for the rest."""

    max_input_tokens = 8
    signature: ClassVar[dict[str, str]] = {"model": "rules"}

    def __init__(self) -> None:
        self.calls: list[int] = []

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) + 1 for t in texts]  # +1 for </s>

    def translate(self, segments: list[Segment], *, marked: bool = False) -> list[Translation]:
        self.calls.append(len(segments))
        if any("POISON" in s.text for s in segments):
            raise RuntimeError("model exploded")
        return [Translation(" ".join(reversed(s.text.split()))) for s in segments]


def run(texts: list[str | None], **kw: object) -> tuple[list, RuleEngine]:
    engine = RuleEngine()
    results, _ = translate_texts(
        engine,
        texts,
        [[] for _ in texts],
        target_lang=str(kw.get("target_lang", "de")),
        max_batch_tokens=64,
        max_batch_size=8,
    )
    return results, engine


def test_statuses_and_order() -> None:
    texts = ["a b c", None, "", "  \t\n", "d e"]
    results, _ = run(texts)
    assert [r.status for r in results] == [OK, EMPTY, EMPTY, EMPTY, OK]
    assert results[0].translation == "c b a" and results[4].translation == "e d"
    assert results[1].translation is None and "null" in (results[1].error or "")
    assert all(r.error for r in results[1:4])


def test_poison_row_fails_alone_after_halving() -> None:
    texts = [f"row {i}" for i in range(7)] + ["POISON here"]
    results, engine = run(texts)
    assert [r.status for r in results].count(FAILED) == 1
    failed = results[-1]
    assert failed.translation is None and "model exploded" in (failed.error or "")
    assert all(r.status == OK for r in results[:-1])
    assert engine.calls[0] == 8 and 1 in engine.calls  # retried down to the single row


def test_long_text_is_split_translated_and_flagged() -> None:
    text = "one two three four. five six seven eight. nine ten."
    results, _ = run([text])
    (result,) = results
    assert result.status == OK_SPLIT and result.error
    # one piece per sentence, each reversed by the rule engine, joined with the source spaces
    assert result.translation == "four. three two one eight. seven six five ten. nine"


def test_whitespace_around_text_is_kept() -> None:
    results, _ = run(["  a b\n"])
    assert results[0].translation == "  b a\n"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a\x00b", "ab"),
        ("x\x1b[0m y", "x y"),
        ("zw\u200bj\u00ad", "zwj"),
        ("wo\u200cman", "woman"),
        ("می\u200cخواهم", "می\u200cخواهم"),  # Persian needs its ZWNJ
        ("👩\u200d💻 ok\n", "👩\u200d💻 ok\n"),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_control_characters_never_reach_the_model() -> None:
    results, _ = run(["\x00\x07", "a\x00 b"])
    assert results[0].status == EMPTY
    assert results[1].translation == "b a"
