"""Split text that is longer than the model's input limit, without losing a character.

A model truncates silently past its limit, so long rows are cut into pieces at sentence
boundaries first, then at whitespace, and only as a last resort inside a word. Each
piece keeps the whitespace that followed it, so joining translations with those
separators reproduces the source layout (paragraph breaks stay paragraph breaks).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from batchmt.workers.sentences import split_sentences

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Piece:
    text: str
    separator: str  # whitespace that followed this piece in the source


def _split_keep(text: str, pattern: re.Pattern[str]) -> list[Piece]:
    pieces: list[Piece] = []
    start = 0
    for match in pattern.finditer(text):
        end = match.start()
        if end > start:  # an empty match or one at the very start keeps text in place
            pieces.append(Piece(text[start:end], text[end : match.end()]))
            start = match.end()
    if start < len(text):
        pieces.append(Piece(text[start:], ""))
    return pieces


def split_for_model(
    text: str, count_tokens: Callable[[list[str]], list[int]], max_tokens: int
) -> list[Piece]:
    """Pieces of `text`, each within `max_tokens`.

    Whole sentences are the pieces: MT models are trained on sentences, and packing several
    back together up to the limit measurably hurt the demo models (long multi-sentence
    inputs drift). Only a sentence that alone exceeds the limit is cut, at whitespace,
    into word runs packed up to the limit.
    """
    if count_tokens([text])[0] <= max_tokens:
        return [Piece(text, "")]
    pieces: list[Piece] = []
    # Sentence boundaries from workers/sentences.py (abbreviations are not ends).
    for sentence in [Piece(body, sep) for body, sep in split_sentences(text)]:
        if count_tokens([sentence.text])[0] <= max_tokens:
            pieces.append(sentence)
        else:
            pieces.extend(
                _pack(_words(sentence, count_tokens, max_tokens), count_tokens, max_tokens)
            )
    return pieces


def _words(
    sentence: Piece, count_tokens: Callable[[list[str]], list[int]], max_tokens: int
) -> list[Piece]:
    """The sentence's words; a word still too long is cut by characters."""
    units: list[Piece] = []
    words = _split_keep(sentence.text, _WHITESPACE)
    if words:
        words[-1] = Piece(words[-1].text, words[-1].separator + sentence.separator)
    for word in words:
        if count_tokens([word.text])[0] <= max_tokens:
            units.append(word)
        else:
            units.extend(_hard_cut(word, count_tokens, max_tokens))
    return units


def _hard_cut(
    piece: Piece, count_tokens: Callable[[list[str]], list[int]], max_tokens: int
) -> list[Piece]:
    """Cut a single over-long word (a URL, a base64 blob, unspaced script) by characters."""
    out: list[Piece] = []
    rest = piece.text
    while rest:
        lo, hi = 1, len(rest)
        while lo < hi:  # largest prefix that fits
            mid = (lo + hi + 1) // 2
            if count_tokens([rest[:mid]])[0] <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        out.append(Piece(rest[:lo], ""))
        rest = rest[lo:]
    out[-1] = Piece(out[-1].text, piece.separator)
    return out


def _pack(
    units: list[Piece], count_tokens: Callable[[list[str]], list[int]], max_tokens: int
) -> list[Piece]:
    """Merge neighbouring units while they fit: fewer, longer pieces translate better."""
    packed: list[Piece] = []
    for unit in units:
        if packed:
            last = packed[-1]
            candidate = last.text + last.separator + unit.text
            if count_tokens([candidate])[0] <= max_tokens:
                packed[-1] = Piece(candidate, unit.separator)
                continue
        packed.append(unit)
    return packed


def join_pieces(translations: list[str], pieces: list[Piece], glue: str = " ") -> str:
    """Reassemble translated pieces with the source's separators (last one dropped).

    `glue` stands in where the source had none (Chinese/Japanese sentences follow each
    other without a space; an English translation of them needs one).
    """
    parts: list[str] = []
    for i, (translation, piece) in enumerate(zip(translations, pieces, strict=True)):
        parts.append(translation)
        if i < len(pieces) - 1:
            parts.append(piece.separator or glue)
    return "".join(parts)
