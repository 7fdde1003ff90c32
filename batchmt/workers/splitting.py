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

from batchmt.pipeline.errors import BatchmtError
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


# At most this many pieces per row: a row that needs more (megabytes of text in one cell)
# is refused with a reason instead of holding its shard for minutes of model calls.
MAX_PIECES = 1024
# A cut is first tried at this share of the size the row's average density allows, so
# most cuts fit at once and only dense stretches (emoji, rare script) are halved again.
_CUT_MARGIN = 0.9

CountTokens = Callable[[list[str]], list[int]]


class TextTooLongError(BatchmtError, ValueError):
    """A row that would need more than MAX_PIECES pieces; the message says what to do."""


def split_for_model(text: str, count_tokens: CountTokens, max_tokens: int) -> list[Piece]:
    """Pieces of `text`, each within `max_tokens`.

    Whole sentences are the pieces: MT models are trained on sentences, and packing several
    back together up to the limit measurably hurt the demo models (long multi-sentence
    inputs drift). Only a sentence that alone exceeds the limit is cut, at whitespace,
    into word runs packed up to the limit.

    Linear time: every level tokenizes each character a bounded number of times, in one
    batched call per level (sentences, words, cuts), never prefix after prefix. A row that
    needs more than MAX_PIECES pieces raises TextTooLongError before any cut.
    """
    total = count_tokens([text])[0]
    if total <= max_tokens:
        return [Piece(text, "")]
    if total > MAX_PIECES * max_tokens:
        raise TextTooLongError(
            f"text is {total:,} tokens ({len(text):,} characters): more than {MAX_PIECES} "
            f"pieces of the model's {max_tokens}-token input limit; split the row upstream"
        )
    pieces: list[Piece] = []
    # Sentence boundaries from workers/sentences.py (abbreviations are not ends).
    sentences = [Piece(body, sep) for body, sep in split_sentences(text)]
    counts = count_tokens([p.text for p in sentences])
    for sentence, count in zip(sentences, counts, strict=True):
        if count <= max_tokens:
            pieces.append(sentence)
        else:
            pieces.extend(
                _pack(_words(sentence, count_tokens, max_tokens), max_tokens, count_tokens)
            )
        if len(pieces) > MAX_PIECES:
            raise TextTooLongError(
                f"text ({len(text):,} characters) needs more than {MAX_PIECES} pieces of the "
                f"model's {max_tokens}-token input limit; split the row upstream"
            )
    return pieces


def _words(sentence: Piece, count_tokens: CountTokens, max_tokens: int) -> list[tuple[Piece, int]]:
    """The sentence's words with their token counts; a word still too long is cut."""
    units: list[tuple[Piece, int]] = []
    words = _split_keep(sentence.text, _WHITESPACE)
    if words:
        words[-1] = Piece(words[-1].text, words[-1].separator + sentence.separator)
    for word, count in zip(words, count_tokens([w.text for w in words]), strict=True):
        if count <= max_tokens:
            units.append((word, count))
        else:
            units.extend(_hard_cut(word, count, count_tokens, max_tokens))
    return units


def _hard_cut(
    piece: Piece, count: int, count_tokens: CountTokens, max_tokens: int
) -> list[tuple[Piece, int]]:
    """Cut a single over-long word (a URL, a base64 blob, unspaced script) by characters.

    Cuts of the size the word's average density allows, counted in one call; a cut that
    still exceeds the limit is halved (and counted again) until it fits.
    """
    text = piece.text
    size = max(1, int(len(text) * max_tokens / max(count, 1) * _CUT_MARGIN))
    cuts = [text[i : i + size] for i in range(0, len(text), size)]
    fitted = _fit(cuts, count_tokens, max_tokens)
    out = [(Piece(cut, ""), n) for cut, n in fitted]
    last, n = out[-1]
    out[-1] = (Piece(last.text, piece.separator), n)
    return out


def _fit(cuts: list[str], count_tokens: CountTokens, max_tokens: int) -> list[tuple[str, int]]:
    """Each cut with its count, halving those over the limit (order kept)."""
    pending = [(cut, n) for cut, n in zip(cuts, count_tokens(cuts), strict=True)]
    while any(n > max_tokens and len(cut) > 1 for cut, n in pending):
        halves: list[str] = []
        for cut, n in pending:
            if n > max_tokens and len(cut) > 1:
                middle = len(cut) // 2
                halves += [cut[:middle], cut[middle:]]
            else:
                halves.append(cut)
        pending = list(zip(halves, count_tokens(halves), strict=True))
    return pending


def _pack(
    units: list[tuple[Piece, int]], max_tokens: int, count_tokens: CountTokens
) -> list[Piece]:
    """Merge neighbouring units while they fit: fewer, longer pieces translate better.

    Packed by the units' own counts (a join of words tokenizes to about their sum), then
    every packed piece is counted once; one that exceeds after all is packed again by
    counting candidates.
    """
    groups: list[list[tuple[Piece, int]]] = []
    total = 0
    for unit in units:
        if groups and total + unit[1] <= max_tokens:
            groups[-1].append(unit)
            total += unit[1]
        else:
            groups.append([unit])
            total = unit[1]
    joined = [_join(group) for group in groups]
    packed: list[Piece] = []
    for group, piece, n in zip(groups, joined, count_tokens([p.text for p in joined]), strict=True):
        if n <= max_tokens or len(group) == 1:
            packed.append(piece)
        else:  # its counts did not add up: pack this group (one piece of text) by counting
            packed.extend(_ordered_pack(group, max_tokens, count_tokens))
    return packed


def _join(group: list[tuple[Piece, int]]) -> Piece:
    text = "".join(p.text + p.separator for p, _ in group[:-1]) + group[-1][0].text
    return Piece(text, group[-1][0].separator)


def _ordered_pack(
    units: list[tuple[Piece, int]], max_tokens: int, count_tokens: CountTokens
) -> list[Piece]:
    """Pack by counting each candidate: for a group whose counts did not add up (its text
    is about one piece, so this stays bounded)."""
    packed: list[Piece] = []
    for unit, _ in units:
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
