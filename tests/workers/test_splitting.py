from __future__ import annotations

import pytest

from batchmt.workers.splitting import Piece, join_pieces, split_for_model


def words(texts: list[str]) -> list[int]:
    """A stand-in tokenizer: one token per whitespace word, one per CJK character."""
    out = []
    for text in texts:
        n = 0
        for word in text.split():
            cjk = sum(1 for ch in word if "\u4e00" <= ch <= "\u9fff")
            n += cjk + (1 if cjk < len(word) else 0)
        out.append(n)
    return out


def test_short_text_is_one_piece() -> None:
    assert split_for_model("A dog runs.", words, 10) == [Piece("A dog runs.", "")]


def test_splits_at_sentences_and_keeps_every_character() -> None:
    text = "One two three. Four five six!\n\nSeven eight nine? Ten."
    pieces = split_for_model(text, words, 4)
    assert all(words([p.text])[0] <= 4 for p in pieces)
    assert "".join(p.text + p.separator for p in pieces) == text
    assert [p.text for p in pieces] == [
        "One two three.",
        "Four five six!",
        "Seven eight nine?",
        "Ten.",
    ]


def test_sentences_are_pieces_of_their_own() -> None:
    # Two-letter words: single letters and a full stop read as initials, not sentences.
    text = "Ab cd. Ce de. Ef gh. Gh ij. W " + "w " * 6 + "end."
    pieces = [p.text for p in split_for_model(text, words, 4)]
    assert pieces == ["Ab cd.", "Ce de.", "Ef gh.", "Gh ij.", "W w w w", "w w w end."]


def test_long_sentence_falls_back_to_words_then_characters() -> None:
    text = "w " * 9 + "x" * 50
    pieces = split_for_model(text.strip(), words, 3)
    assert "".join(p.text + p.separator for p in pieces) == text.strip()
    assert all(words([p.text])[0] <= 3 for p in pieces)


def test_cjk_sentences_without_spaces() -> None:
    text = "我喜欢猫。你喜欢狗吗？他们在公园里玩。"
    pieces = split_for_model(text, words, 6)
    assert "".join(p.text + p.separator for p in pieces) == text
    assert len(pieces) >= 2


@pytest.mark.parametrize(
    ("glue", "expected"), [(" ", "I like cats. Do you?"), ("", "I like cats.Do you?")]
)
def test_join_uses_source_separator_or_glue(glue: str, expected: str) -> None:
    pieces = [Piece("a", ""), Piece("b", "")]
    assert join_pieces(["I like cats.", "Do you?"], pieces, glue) == expected
    spaced = [Piece("a", "\n\n"), Piece("b", "")]
    assert join_pieces(["x", "y"], spaced, glue) == "x\n\ny"
