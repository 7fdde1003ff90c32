"""How a forced glossary term sits in its translation: the fragments a reader rejects.

A term the decoder had to write somewhere can end up where no reader accepts it:
- as a sentence of its own after the translation ("... Parkplatz. Die Metropole."), the
  search having postponed it to the end;
- after a truncated copy of itself ("Ein schwarz-weißer Vierr Vierbeiner");
- in front of the sentence, which then starts over ("Kopfbedeckung Ein Herr mit ...").
All three are found on the text alone, so the worker flags such rows (`term_placement` in
`qe_flags`) and `benchmarks/glossary.py` counts them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from batchmt.pipeline.text.glossary import term_variants

APPENDED = "appended"
STUB = "stub"
PREPENDED = "prepended"
# Sentence ends; the lookbehind keeps the punctuation with its sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# A sentence of this many words or fewer that holds a term is the term dropped at the end.
_FRAGMENT_WORDS = 3
# A stub shares at least this many first letters with the term it precedes.
_STUB_MIN_LETTERS = 3


def strip_punctuation(word: str) -> str:
    start, end = 0, len(word)
    while start < end and unicodedata.category(word[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(word[end - 1]).startswith("P"):
        end -= 1
    return word[start:end]


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def _holds(text: str, forms: tuple[str, ...]) -> bool:
    low = text.casefold()
    return any(f.casefold() in low for f in forms)


def term_fragments(source: str, translation: str, targets: Iterable[str]) -> list[str]:
    """What is wrong with where the target terms sit (APPENDED, STUB), each once; empty
    when every term reads as part of its sentence."""
    found: dict[str, None] = {}
    parts = sentences(translation)
    extra = len(parts) - len(sentences(source))
    for target in targets:
        forms = term_variants(target)
        for n, part in enumerate(parts[1:], 1):
            if not _holds(part, forms):
                continue
            # A short sentence holding the term, or the term only in sentences the source
            # does not have: the term was appended, not placed.
            short = len(part.split()) <= _FRAGMENT_WORDS
            only_extra = extra > 0 and n >= len(parts) - extra
            if short or (only_extra and not any(_holds(p, forms) for p in parts[:n])):
                found[APPENDED] = None
        if _has_stub(translation, forms):
            found[STUB] = None
        if any(_opens_before_start(part, forms, source) for part in parts):
            found[PREPENDED] = None
    return list(found)


def _opens_before_start(sentence: str, forms: tuple[str, ...], source: str) -> bool:
    """The term opens the sentence and a capitalised word follows that the source does not
    have: the sentence starts again after the term ("Kopfbedeckung Ein Herr ..."). A name
    after the term ("Herr Smith") is in the source too, so it does not count."""
    low = sentence.casefold()
    source_words = {strip_punctuation(w).casefold() for w in source.split()}
    for form in forms:
        if not low.startswith(form.casefold() + " "):
            continue
        rest = sentence[len(form) :].split()
        following = strip_punctuation(rest[0]) if rest else ""
        if following[:1].isupper() and following.casefold() not in source_words:
            return True
    return False


def _has_stub(text: str, forms: tuple[str, ...]) -> bool:
    words = [strip_punctuation(w) for w in text.split()]
    for k, word in enumerate(words):
        low = word.casefold()
        for form in forms:
            term = form.casefold()
            at = low.find(term)
            if at < 0:
                continue
            # Glued: "VierVierbeiner" (a cut copy of the term right before it).
            head = low[:at]
            if len(head) >= _STUB_MIN_LETTERS and term.startswith(head):
                return True
            if at == 0 and k > 0:
                before = words[k - 1].casefold()
                # "Vierr Vierbeiner": the previous word starts like the term but is not it.
                cut = before[: max(_STUB_MIN_LETTERS, len(before) - 1)]
                if (
                    len(before) >= _STUB_MIN_LETTERS
                    and before != term
                    and not before.startswith(term)
                    and term.startswith(cut)
                ):
                    return True
    return False
