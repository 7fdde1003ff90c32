"""The reference-free checks of one translated row, and the names of their flags: one
module for the quality sample (samples.py) and row-level QE (qe.py), so a flag means the
same wherever it is counted.

- `empty_output`; `untranslated` (a whole sentence copied);
- `length_ratio`: target/source length, CJK characters weighted (`weighted_length`), outside
  a range; the sample uses the default range, QE the job's `quality.thresholds`;
- `repeated_ngrams`: a repetition loop.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

EMPTY_OUTPUT = "empty_output"
UNTRANSLATED = "untranslated"
LENGTH_RATIO = "length_ratio"
REPEATED_NGRAMS = "repeated_ngrams"
STRING_FLAGS = (EMPTY_OUTPUT, UNTRANSLATED, LENGTH_RATIO, REPEATED_NGRAMS)

# Target/source length ratio (weighted) outside this range is `length_ratio`. Multi30k
# en->de references: 0.61 at the 0.1st percentile, 0.82 at the 1st; half a reference: 0.51
# (median). QE's defaults (qe.QeThresholds); a job overrides them for QE.
MIN_LENGTH_RATIO = 0.7
MAX_LENGTH_RATIO = 3.0
# Share of repeated n-grams in a translation above which it looks degenerate ("the the the").
REPEAT_LIMIT = 0.5
REPEAT_N = 3
# Shorter sources ("A dog.") vary too much in length to judge a short translation.
_MIN_SOURCE_FOR_RATIO = 20.0


@lru_cache(maxsize=1 << 16)
def _script(ch: str) -> str | None:
    """The script of a letter (None for digits, punctuation, symbols). Cached: every output
    row asks for each of its characters, and a language has few of them."""
    if not ch.isalpha():
        return None
    code = ord(ch)
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF:
        return "kana"
    if 0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x2FFFF:
        return "han"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF:
        return "hangul"
    name = unicodedata.name(ch, "")
    for script in ("LATIN", "CYRILLIC", "GREEK", "ARABIC", "HEBREW", "DEVANAGARI", "THAI"):
        if name.startswith(script):
            return script.lower()
    for script in ("GEORGIAN", "ARMENIAN"):
        if script in name:
            return script.lower()
    return "other"


# One CJK character carries about what three Latin ones do: median character ratios of
# Tatoeba references are 0.32 (en->zh) and 3.1 (zh->en). Weighting them makes one length
# range fit Latin and CJK pairs alike.
_CJK_WEIGHT = 3.2
# Shorter sources ("A dog.") vary too much in length to judge a short translation.
_MIN_SOURCE_FOR_RATIO = 20.0


def weighted_length(text: str) -> float:
    """Characters, a CJK one counting as `_CJK_WEIGHT` Latin ones."""
    return sum(
        _CJK_WEIGHT if (ord(ch) >= 0x2E80 and _script(ch) in ("han", "kana", "hangul")) else 1.0
        for ch in text.strip()
    )


def repeated_ngram_ratio(text: str, n: int = REPEAT_N) -> float:
    """Share of n-grams that repeat an earlier one (0 = none, near 1 = degenerate loop).

    Words when the text has spaces; characters otherwise (Chinese, Japanese).
    """
    words = text.split()
    units: Sequence[str] = words if len(words) > 1 else text.strip()
    size = n if len(words) > 1 else n + 1
    total = len(units) - size + 1
    if total < 2:
        return 0.0
    grams = Counter(tuple(units[i : i + size]) for i in range(total))
    return 1.0 - len(grams) / total


def _is_sentence(text: str) -> bool:
    """Names, codes and numbers are legitimately copied; whole sentences are not.

    Two words with letters, or (scripts without spaces) four CJK characters.
    """
    words = [w for w in text.split() if any(ch.isalpha() for ch in w)]
    return len(words) >= 2 or sum(ch.isalpha() and ord(ch) >= 0x2E80 for ch in text) >= 4


def length_ratio(source: str, translation: str) -> float:
    """Weighted target/source length (see `weighted_length`)."""
    return weighted_length(translation) / max(1.0, weighted_length(source))


def row_flags(
    source: str,
    translation: str,
    min_ratio: float = MIN_LENGTH_RATIO,
    max_ratio: float = MAX_LENGTH_RATIO,
) -> tuple[list[str], float, float]:
    """The string checks of one translated row: (flags, length ratio, repeat ratio)."""
    flags = []
    src, hyp = source.strip(), translation.strip()
    ratio = length_ratio(src, hyp)
    repeat = repeated_ngram_ratio(hyp)
    if not hyp:
        flags.append(EMPTY_OUTPUT)
    elif hyp.casefold() == src.casefold() and _is_sentence(src):
        flags.append(UNTRANSLATED)
    too_short = ratio < min_ratio and weighted_length(src) >= _MIN_SOURCE_FOR_RATIO
    if hyp and (too_short or ratio > max_ratio):
        flags.append(LENGTH_RATIO)
    if repeat > REPEAT_LIMIT:
        flags.append(REPEATED_NGRAMS)
    return flags, ratio, repeat
