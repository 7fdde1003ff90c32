"""Glossaries in memory: terms, a job's glossary merged with a row's own, finding terms in a
source text, and checking which target terms a translation contains.

Matching and checking compare NFKC-normalised text, case-insensitively unless a term says
otherwise, so full-width letters, ligatures and case never hide a term. Glossary files are
read by glossary_files.py.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchmt.pipeline.errors import BatchmtError
from batchmt.pipeline.text.languages import same_language

# Separates a target term's accepted forms ("Herr|Herrn"): in a case-inflected language the
# sentence may need an inflected form, and any listed form satisfies the term.
VARIANT_SEPARATOR = "|"


class RowGlossaryError(BatchmtError, ValueError):
    """A row's own `glossary` value is malformed; only that row fails."""


@dataclass(frozen=True)
class Term:
    source: str
    target: str
    case_sensitive: bool = False

    @classmethod
    def clean(cls, source: str, target: str, case_sensitive: bool = False) -> Term | None:
        """The term without surrounding whitespace; None when a side is empty."""
        source, target = source.strip(), target.strip()
        if not source or not target:
            return None
        return cls(source, target, case_sensitive)

    @property
    def key(self) -> str:
        return _key(self.source, self.case_sensitive)


@dataclass(frozen=True)
class TermMatch:
    """A glossary term found in a source text; offsets index the original text."""

    start: int
    end: int
    term: Term

    @property
    def pair(self) -> tuple[str, str]:
        return (self.term.source, self.term.target)


def _key(text: str, case_sensitive: bool) -> str:
    text = unicodedata.normalize("NFKC", text)
    return text if case_sensitive else text.casefold()


class Glossary:
    """Terms by normalised source; a row glossary extends and overrides the job's."""

    def __init__(self, terms: Iterable[Term] = ()) -> None:
        self.terms: dict[str, Term] = {}
        for term in terms:
            self.terms[term.key] = term
        self._lengths = sorted({len(k) for k in self.terms}, reverse=True)
        # The case modes some term is matched in (each costs a pass over the text).
        self._modes = sorted({t.case_sensitive for t in self.terms.values()})

    def __len__(self) -> int:
        return len(self.terms)

    def with_row(self, value: Any) -> Glossary:
        """This glossary plus a row's `glossary` column (list of {source, target})."""
        if value is None:
            return self
        row_terms = parse_row_glossary(value)
        if not row_terms:
            return self
        return Glossary([*self.terms.values(), *row_terms])

    def match(self, text: str, protected: Sequence[tuple[int, int]] = ()) -> list[TermMatch]:
        """Leftmost-longest, non-overlapping matches; none inside a protected span."""
        if not self.terms:
            return []
        candidates: list[TermMatch] = []
        for case_sensitive in self._modes:
            norm, origin, ends = _normalised(text, case_sensitive)
            for i in range(len(norm)):
                if i and origin[i - 1] == origin[i]:
                    continue  # inside what one original character became ("ﬁ" -> "fi")
                for length in self._lengths:
                    stop = i + length
                    if stop > len(norm) or (stop < len(norm) and origin[stop] == origin[stop - 1]):
                        continue
                    term = self.terms.get(norm[i:stop])
                    if term is None or term.case_sensitive != case_sensitive:
                        continue
                    start, end = origin[i], ends[stop - 1]
                    if _bounded(text, start, end) and not _overlaps(start, end, protected):
                        candidates.append(TermMatch(start, end, term))
                        break  # the longest at this position
        candidates.sort(key=lambda m: (m.start, -(m.end - m.start), m.term.source))
        chosen: list[TermMatch] = []
        for match in candidates:
            if not chosen or match.start >= chosen[-1].end:
                chosen.append(match)
        return chosen

    def candidates(self, text: str) -> set[Term]:
        """Every term that `match` could find in `text` or in any part of it: the terms
        whose normalised source occurs anywhere, word boundaries and overlaps ignored.

        A superset on purpose: the translation memory keys a row by these, so a changed
        term that could reach a row's decoding always changes that row's key.
        """
        found: set[Term] = set()
        if not self.terms:
            return found
        for case_sensitive in self._modes:
            norm = _normalised(text, case_sensitive)[0]
            size = len(norm)
            for i in range(size):
                for length in self._lengths:
                    if i + length > size:
                        continue
                    term = self.terms.get(norm[i : i + length])
                    if term is not None and term.case_sensitive == case_sensitive:
                        found.add(term)
        return found


def _normalised(text: str, case_sensitive: bool) -> tuple[str, list[int], list[int]]:
    """NFKC (and casefold) per base character with its combining marks, keeping for each
    output character where its original character cluster starts and ends."""
    if text.isascii():
        # ASCII is its own NFKC form, has no combining marks, and casefolds one character
        # to one: the same answer without a Python loop per character.
        size = len(text)
        return (
            (text if case_sensitive else text.lower()),
            list(range(size)),
            list(range(1, size + 1)),
        )
    out: list[str] = []
    origin: list[int] = []
    ends: list[int] = []
    i = 0
    while i < len(text):
        j = i + 1
        while j < len(text) and unicodedata.combining(text[j]):
            j += 1
        piece = unicodedata.normalize("NFKC", text[i:j])
        if not case_sensitive:
            piece = piece.casefold()
        out.append(piece)
        origin.extend([i] * len(piece))
        ends.extend([j] * len(piece))
        i = j
    return "".join(out), origin, ends


def _unspaced(ch: str) -> bool:
    """Scripts written without spaces between words: no word boundaries there."""
    code = ord(ch)
    return (
        0x0E00 <= code <= 0x0EFF  # Thai, Lao
        or 0x1000 <= code <= 0x109F  # Myanmar
        or 0x1780 <= code <= 0x17FF  # Khmer
        or 0x3040 <= code <= 0x30FF  # Hiragana, Katakana
        or 0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
        or 0xFF66 <= code <= 0xFF9F  # half-width Katakana
        or 0x20000 <= code <= 0x3FFFF  # CJK extensions B+
    )


def _wordy(ch: str) -> bool:
    return (ch.isalnum() or ch == "_") and not _unspaced(ch)


def _bounded(text: str, start: int, end: int) -> bool:
    """A term in a space-delimited script must not start or end inside a word."""
    if _wordy(text[start]) and start > 0 and _wordy(text[start - 1]):
        return False
    return not (_wordy(text[end - 1]) and end < len(text) and _wordy(text[end]))


def _overlaps(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(start < s_end and s_start < end for s_start, s_end in spans)


def term_variants(target: str) -> tuple[str, ...]:
    """The accepted forms of a target term, base form first: "Herr|Herrn" -> ("Herr",
    "Herrn"). Empty forms are dropped; a target without the separator is its only form."""
    forms = (f.strip() for f in target.split(VARIANT_SEPARATOR))
    return tuple(dict.fromkeys(f for f in forms if f)) or (target.strip(),)


def check_terms(
    translation: str, terms: Iterable[Term | tuple[str, str]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(hits, missed): the (source, target) pairs whose target the translation contains.

    Containment, not whole words: an inflected or compound form ("Hundes", "Hundeleine")
    counts, as the decoder guarantees the term's characters, not what follows them. A
    target listing variants ("Herr|Herrn") is found when any one of them is.
    """
    hits: list[tuple[str, str]] = []
    missed: list[tuple[str, str]] = []
    folded = _key(translation, False)
    exact = _key(translation, True)
    for item in terms:
        term = item if isinstance(item, Term) else Term(item[0], item[1])
        haystack = exact if term.case_sensitive else folded
        found = any(
            _key(form, term.case_sensitive) in haystack for form in term_variants(term.target)
        )
        (hits if found else missed).append((term.source, term.target))
    return hits, missed


def parse_row_glossary(value: Any) -> list[Term]:
    """A row's `glossary` value: a list of {source, target} (or a {source: target} map)."""
    if isinstance(value, Mapping):
        value = [{"source": k, "target": v} for k, v in value.items()]
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise RowGlossaryError(
            f"glossary must be a list of {{source, target}} entries, got {type(value).__name__}"
        )
    terms: dict[str, Term] = {}
    for n, entry in enumerate(value, 1):
        if not isinstance(entry, Mapping):
            raise RowGlossaryError(f"glossary entry {n} is not a {{source, target}} struct")
        source, target = entry.get("source"), entry.get("target")
        if not isinstance(source, str) or not isinstance(target, str):
            raise RowGlossaryError(f"glossary entry {n} needs string source and target")
        term = Term.clean(source, target, bool(entry.get("case_sensitive") or False))
        if term is None:
            raise RowGlossaryError(f"glossary entry {n} has an empty source or target")
        old = terms.get(term.key)
        if old is not None and old.target != term.target:
            raise RowGlossaryError(
                f"glossary entries give {source!r} two targets ({old.target!r}, {target!r}); "
                "keep one"
            )
        terms[term.key] = term
    return list(terms.values())


def lang_matches(tag: str, lang: str) -> bool:
    """Whether `tag` names `lang`'s language as BCP 47 matching sees it (`zh-TW` is
    `zh-Hant`, `iw` is `he`): see pipeline/text/languages.py."""
    return same_language(tag, lang)
