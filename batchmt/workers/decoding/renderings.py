"""The model's own renderings of glossary source terms, learnt once per term per engine.

A forced term that differs from what the model would say must *replace* the model's
rendering of its source span ("dog" -> "Vierbeiner" where the model writes "Hund"), not be
bolted on beside it. To know what to replace, each source term is translated alone, beam
search, and the content word of the short answers is taken as a default rendering: "dog" ->
"Hund." / "Ein Hund." / "Hunde." gives Hund, Hunde. The constraint then blocks those
renderings in the row and lets its first token take their probability (see
`constraints.avoid_sequences`). Learnt once per source term, cached on the engine: a job
matches the same few hundred terms in millions of rows.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from batchmt.pipeline.text.term_checks import strip_punctuation
from batchmt.workers.decoding.constraints import (
    Avoid,
    RowConstraints,
    TokenSeq,
    avoid_sequences,
    build_row_constraints,
)

#: Texts -> each text's translations, best first.
NBest = Callable[[list[str]], list[list[str]]]

# Beams for the probe: enough to catch a second common rendering ("Hemd", "T-Shirt").
PROBE_BEAMS = 6
# A term's translation is a few words; a longer probe answer is the model rambling.
PROBE_MAX_TOKENS = 16
PROBE_BATCH = 64
# An answer of at most this many words is the term's translation, with at most an article
# in front ("Ein Hund."); longer ones ("Ein Hund rennt.") end in a word that is not.
_SHORT_ANSWER_WORDS = 2
# A piece that extends a term's last piece by this many letters at most is the term with an
# inflection ending ("Hunde", "Jungen"); a longer one is another word ("Mannschaft").
_ENDING_LETTERS = 2


def head_words(answers: Sequence[str]) -> tuple[str, ...]:
    """The default renderings in a term's probe answers (best first): the last word of the
    best answer and of every short one. The head of a noun phrase comes last in the target
    languages we decode into (German "Ein Hund", French "Un chien"); a language written
    without spaces gives the whole answer, which is the rendering there."""
    found: dict[str, None] = {}
    for rank, answer in enumerate(answers):
        words = [w for w in (strip_punctuation(w) for w in answer.split()) if w]
        if words and (rank == 0 or len(words) <= _SHORT_ANSWER_WORDS):
            found[words[-1]] = None
    return tuple(found)


class TermDefaults:
    """Per engine: learns and caches each source term's default renderings, and builds
    the rows' constraints with them avoided."""

    def __init__(self, tokenizer: Any, n_best: NBest, *, enabled: bool = True) -> None:
        self.tokenizer = tokenizer
        self._n_best = n_best
        #: False: constraints without default renderings (terms may be bolted on).
        self.enabled = enabled
        self.renderings: dict[str, tuple[str, ...]] = {}
        #: Each probed source term's answers, best first ("Ein Hund.", "Hund."): the term
        #: placer reads the article the model writes in front of the rendering there.
        self.answers: dict[str, tuple[str, ...]] = {}
        self._avoid: dict[tuple[str, str], Avoid] = {}
        self._pieces: list[tuple[str, int]] | None = None

    def forget(self) -> None:
        """Drop what was learnt (benchmarks time the learning with the decoding)."""
        self.renderings.clear()
        self.answers.clear()
        self._avoid.clear()

    def learn(self, sources: Iterable[str]) -> None:
        """Probe the model for every source term not seen yet, in a few batches."""
        if not self.enabled:
            return
        missing = [s for s in dict.fromkeys(sources) if s not in self.renderings]
        for start in range(0, len(missing), PROBE_BATCH):
            chunk = missing[start : start + PROBE_BATCH]
            for source, answers in zip(chunk, self._n_best(chunk), strict=True):
                self.renderings[source] = head_words(answers)
                self.answers[source] = tuple(answers)

    def avoid(self, source: str, target: str) -> Avoid:
        key = (source, target)
        found = self._avoid.get(key)
        if found is None:
            found = avoid_sequences(
                self.tokenizer, target, self.renderings.get(source, ()), self._extensions
            )
            self._avoid[key] = found
        return found

    def row_constraints(
        self, rows: Sequence[Sequence[tuple[str, str]]]
    ) -> list[RowConstraints | None]:
        """Constraints for each row's (source, target) terms; None for a row without."""
        # A verbatim span (a placeholder, a number) is its own translation: nothing to avoid.
        self.learn(s for terms in rows for s, t in terms if _translated(s, t))
        built: list[RowConstraints | None] = []
        for terms in rows:
            if not terms:
                built.append(None)
                continue
            avoid: dict[str, Avoid] = {}
            for source, target in terms:
                if _translated(source, target):
                    avoid[target] = _merge(avoid.get(target), self.avoid(source, target))
            targets = [t for _, t in terms]
            built.append(
                build_row_constraints(
                    self.tokenizer, targets, avoid=avoid, extensions=self._endings
                )
            )
        return built

    def _endings(self, token: int) -> list[int]:
        """Pieces that add an inflection ending (at most two letters) to `token`'s piece:
        "▁Hund" -> "▁Hunde", "▁Hunden", but not "▁Mann" -> "▁Mannschaft"."""
        length = len(self.tokenizer.convert_ids_to_tokens(token))
        pieces = self.tokenizer.convert_ids_to_tokens(self._extensions(token))
        return [
            i
            for i, piece in zip(self._extensions(token), pieces, strict=True)
            if len(piece) - length <= _ENDING_LETTERS
        ]

    def _extensions(self, token: int) -> list[int]:
        """Ids of the vocabulary pieces that extend `token`'s piece ("▁Hund" -> "▁Hunde",
        "▁Hundes"). Pieces of two letters or fewer extend into unrelated words."""
        piece = self.tokenizer.convert_ids_to_tokens(token)
        if not isinstance(piece, str) or len(piece.lstrip("▁Ġ")) < 3:
            return []
        if self._pieces is None:
            self._pieces = sorted((p, int(i)) for p, i in self.tokenizer.get_vocab().items())
        found = []
        at = bisect.bisect_right(self._pieces, (piece, 1 << 62))
        while at < len(self._pieces) and self._pieces[at][0].startswith(piece):
            found.append(self._pieces[at][1])
            at += 1
        return found


def _translated(source: str, target: str) -> bool:
    return source.strip().casefold() != target.strip().casefold()


def _merge(old: Avoid | None, new: Avoid) -> Avoid:
    """Two source terms forced to one target ("bike", "bicycle" -> "Velo") avoid both."""
    if old is None:
        return new
    blocked: tuple[TokenSeq, ...] = tuple(dict.fromkeys((*old[0], *new[0])))
    return blocked, tuple(dict.fromkeys((*old[1], *new[1])))


def default_rendering_left(
    text: str, terms: Sequence[tuple[str, str]], renderings: dict[str, tuple[str, ...]]
) -> bool:
    """Whether `text` still holds the model's own rendering of a source term beside the
    forced one (the row must be re-decoded so the term replaces it)."""
    from batchmt.pipeline.text.glossary import term_variants

    for source, target in terms:
        forms = {f.casefold() for f in term_variants(target)}
        for word in renderings.get(source, ()):
            if word.casefold() in forms or any(f in word.casefold() for f in forms):
                continue
            if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE):
                return True
    return False
