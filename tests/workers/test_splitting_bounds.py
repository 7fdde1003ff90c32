"""Issue #15, finding 6: splitting a huge row is linear work with a hard bound on pieces.

No timing: a counting tokenizer records how many characters were tokenized, and the bound
is on that (a quadratic split tokenizes prefix after prefix of a 200k-character word).
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from batchmt.pipeline.status import INVALID, OK, OK_SPLIT
from batchmt.workers.engines.base import Segment, Translation, TranslationEngine
from batchmt.workers.splitting import MAX_PIECES, TextTooLongError, split_for_model
from batchmt.workers.translate import translate_texts


class CountingTokenizer:
    """Two characters per token per whitespace word, plus </s>; counts every character."""

    def __init__(self) -> None:
        self.characters = 0
        self.calls = 0

    def __call__(self, texts: list[str]) -> list[int]:
        self.calls += 1
        self.characters += sum(len(t) for t in texts)
        return [sum((len(w) + 1) // 2 for w in t.split()) + 1 for t in texts]


@pytest.mark.parametrize(
    "text",
    [
        "x" * 200_000,  # one word, no spaces (a base64 blob, unspaced script)
        "词" * 150_000 + "abc" * 10_000,
        ("a" * 300 + " ") * 600,  # long words, every one under the limit
        "word " * 40_000,  # 40k short words in one "sentence"
    ],
    ids=["no-spaces", "mixed", "long-words", "short-words"],
)
def test_a_200k_character_row_is_cut_with_linear_work(text: str) -> None:
    count = CountingTokenizer()
    pieces = split_for_model(text, count, 512)
    assert "".join(p.text + p.separator for p in pieces) == text
    assert all(n <= 512 for n in count([p.text for p in pieces]))
    assert len(pieces) <= MAX_PIECES
    # Each level (whole text, sentences, words, cuts, packed pieces) reads every character
    # a bounded number of times; a prefix search reads hundreds of millions.
    assert count.characters <= 12 * len(text)


def test_a_row_past_the_piece_bound_is_refused_before_any_cut() -> None:
    count = CountingTokenizer()
    text = "x" * (2 * 40 * MAX_PIECES + 100)  # 2 characters per token: over MAX_PIECES x 40
    with pytest.raises(TextTooLongError, match="split the row upstream"):
        split_for_model(text, count, 40)
    assert count.calls == 1


class EchoEngine(TranslationEngine):
    max_input_tokens = 40
    signature: ClassVar[dict[str, str]] = {"model": "echo"}

    def count_tokens(self, texts: list[str]) -> list[int]:
        return CountingTokenizer()(texts)

    def translate(self, segments: list[Segment], *, marked: bool = False) -> list[Translation]:
        return [Translation(s.text.upper()) for s in segments]


def test_a_row_too_long_to_split_is_invalid_and_its_neighbours_are_translated() -> None:
    huge = "x" * (2 * 40 * MAX_PIECES + 100)
    texts: list[str | None] = ["a short row.", huge, "y" * 200]
    results, _ = translate_texts(
        EchoEngine(), texts, [[], [], []], target_lang="de", max_batch_tokens=512, max_batch_size=8
    )
    assert [r.status for r in results] == [OK, INVALID, OK_SPLIT]
    assert results[1].error is not None and "pieces" in results[1].error
    assert (results[2].translation or "").replace(" ", "") == "Y" * 200  # glued pieces
