"""Sentence boundaries, from a maintained multilingual segmenter plus two vetoes of our own.

Long rows are cut into sentences before translation and each piece is translated alone, so
a wrong cut (`Dr. | Smith`) is a broken sentence in the output, while a missed cut only
leaves a longer piece (which the caller still cuts at whitespace if it must). Hence:

- sentencex (Wikimedia; abbreviation lists for about 300 languages, CJK and other scripts'
  terminators, closing quotes) proposes the boundaries. On the hand-checked paragraphs in
  tests/fixtures/sentences.jsonl it beat pysbd and our old regex (see README);
- when the language is not known, a boundary stands only where the English, German and
  French rules all put one, so an abbreviation any of them knows is not taken for an end;
- a boundary is dropped when the next sentence starts with a lower-case letter (`I waited...
  and waited`, `Oak St. near`): in cased scripts a sentence does not start that way;
- a boundary is dropped after a lone capital initial (`M. | Dupont`, `U. | S.`), and after a
  German ordinal (`Der 2. | Weltkrieg`, `im 19. | Jahrhundert`);
- a boundary is dropped inside a date whose day or month is abbreviated with a full stop
  (`3. | janv. | 1990`, `3. | Jan. 1990`), which no segmenter we measured kept whole.

The whitespace between sentences is kept exactly: every piece is `(sentence, whitespace)`
and the pieces joined back give the input.
"""

from __future__ import annotations

import re
from functools import lru_cache

import sentencex

# Languages whose abbreviation lists vote when the text's language is unknown.
_UNKNOWN_LANGUAGE_VOTERS = ("en", "de", "fr")
_OPENING = "\"'“‘„«»‹(["
# Month names and their abbreviations in the languages above (a prefix is enough:
# `janv`, `Jan`, `Januar`, `janvier`).
_MONTH = (
    r"(?:jan|feb|f[ée]v|m[äa]r|mars|apr|avr|ma[iy]|juin|juil|jun|jul|aug|ao[uû]|sep|o[ck]t"
    r"|nov|d[ée][cz])\w*"
)
_ENDS_IN_ORDINAL = re.compile(r"(?<![\w.])\d{1,2}\.$")
# German writes ordinals with a full stop: after an article or preposition (`der 2.`,
# `im 19.`, `am 3.`) the number is an ordinal, not a sentence end.
_GERMAN_ORDINAL = re.compile(
    r"\b(?:der|die|das|den|dem|des|im|am|vom|zum|zur|beim|ins|bis|ab|seit|ihr|sein)"
    r"\s+\d{1,3}\.$",
    re.IGNORECASE,
)
_STARTS_WITH_MONTH = re.compile(_MONTH + r"\b", re.IGNORECASE)
_ENDS_IN_MONTH_ABBREVIATION = re.compile(r"\b" + _MONTH + r"\.$", re.IGNORECASE)
_STARTS_WITH_YEAR = re.compile(r"\d{2,4}\b")
# A lone capital and a full stop is an initial (`J. R. R. Tolkien`, `M. Dupont`, `U.S.`)
# far more often than a sentence ending in one letter (`vitamin C.`).
_ENDS_IN_INITIAL = re.compile(r"(?<![A-Za-z\u00c0-\u024f.])[A-Z]\.$")


def split_sentences(text: str, lang: str | None = None) -> list[tuple[str, str]]:
    """`(sentence, whitespace after it)` pairs; joined back they give `text` exactly.

    `lang`: the text's language as a BCP 47 tag (`de`, `fr-CA`); None when unknown.
    """
    if not text:
        return []
    if lang:
        starts = _starts(text, lang.replace("_", "-").split("-")[0].lower())
    else:
        votes = [_starts(text, voter) for voter in _UNKNOWN_LANGUAGE_VOTERS]
        starts = sorted(set.intersection(*(set(v) for v in votes)))
    kept = [s for s in starts if _real_boundary(text, s)]
    pieces: list[tuple[str, str]] = []
    begin = 0
    for start in [*kept, len(text)]:
        chunk = text[begin:start]
        body = chunk.rstrip()
        if body:
            pieces.append((body, chunk[len(body) :]))
        elif pieces:  # whitespace only: belongs to the separator before it
            pieces[-1] = (pieces[-1][0], pieces[-1][1] + chunk)
        else:
            pieces.append((chunk, ""))
        begin = start
    return pieces


def _starts(text: str, lang: str) -> list[int]:
    """Offsets where sentencex starts a sentence (after the whitespace it ends with)."""
    starts: list[int] = []
    cursor = 0
    for segment in _segment(lang, text):
        # sentencex returns the text's own characters in order; `find` only guards against a
        # version that normalises something, in which case the boundary is skipped.
        at = text.find(segment, cursor)
        if at < 0:
            continue
        cursor = at + len(segment)
        if 0 < cursor < len(text):
            starts.append(cursor)
    return starts


def _segment(lang: str, text: str) -> list[str]:
    return [s for s in sentencex.segment(_known(lang), text) if s]


@lru_cache(maxsize=64)
def _known(lang: str) -> str:
    """sentencex falls back along its language chains itself; an empty code is English."""
    return lang or "en"


def _real_boundary(text: str, start: int) -> bool:
    # A window around the boundary, not the whole text: linear time on long rows.
    before = text[max(0, start - 16) : start].rstrip()
    after = text[start : start + 24].lstrip(_OPENING + " \t")
    if not before or not after:
        return True
    if after[0].islower() or _ENDS_IN_INITIAL.search(before):
        return False
    if _GERMAN_ORDINAL.search(before):
        return False
    if _ENDS_IN_ORDINAL.search(before) and _STARTS_WITH_MONTH.match(after):
        return False
    return not (_ENDS_IN_MONTH_ABBREVIATION.search(before) and _STARTS_WITH_YEAR.match(after))
