"""Lexical constraints as token sequences, and the per-hypothesis state that tracks them.

A constraint is one target term. It is *disjunctive*: the term can be written by several
token sequences (with or without SentencePiece's word-start "▁", capitalised at sentence
start), and producing any one of them satisfies it. The alternatives of a constraint share
one trie, so a hypothesis follows all of them at once and a divergence resets it.

States are immutable and cheap to copy: the search (`workers/decoding.py`) keeps one per
hypothesis and calls `advance` for every candidate token it scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

TokenSeq = tuple[int, ...]


@dataclass(eq=False)
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    # True when some alternative ends here: reaching it meets the constraint.
    terminal: bool = False


@dataclass(frozen=True)
class Constraint:
    """One term a translation must contain, as its alternative token sequences."""

    alternatives: tuple[TokenSeq, ...]
    label: str = ""  # the term as text, for reports

    @property
    def satisfiable(self) -> bool:
        return any(self.alternatives)


@dataclass(frozen=True)
class ConstraintState:
    """Where one hypothesis stands: which constraints it met, and which one it is inside."""

    met: int = 0  # bitmask over the row's constraints
    current: int = -1  # constraint being written, -1 when none
    node: _Node | None = None
    depth: int = 0


class RowConstraints:
    """A row's constraints, compiled into one trie per constraint.

    Unsatisfiable constraints (every alternative empty or unknown to the vocabulary) are
    kept so they are reported unmet, but never block EOS forever: they count as hopeless.
    """

    def __init__(self, constraints: Sequence[Constraint]) -> None:
        self.constraints = tuple(constraints)
        self._roots: list[_Node] = []
        self._min_len: list[int] = []
        for constraint in self.constraints:
            root = _Node()
            for alt in constraint.alternatives:
                if alt:
                    _insert(root, alt)
            self._roots.append(root)
            lengths = [len(a) for a in constraint.alternatives if a]
            self._min_len.append(min(lengths) if lengths else 0)
        self.full = 0
        for i, constraint in enumerate(self.constraints):
            if constraint.satisfiable:
                self.full |= 1 << i
        # The most progress a hypothesis can make: the number of search banks minus one.
        self.max_progress = sum(self._min_len)
        self._starts: dict[int, frozenset[int]] = {}

    def __len__(self) -> int:
        return len(self.constraints)

    def initial(self) -> ConstraintState:
        return ConstraintState()

    def done(self, state: ConstraintState) -> bool:
        """All satisfiable constraints met: the hypothesis may end."""
        return state.met & self.full == self.full

    def progress(self, state: ConstraintState) -> int:
        """Constraint tokens written so far: the hypothesis's bank in the beam allocation."""
        total = sum(n for i, n in enumerate(self._min_len) if state.met >> i & 1)
        if state.current >= 0:
            total += min(state.depth, self._min_len[state.current] - 1)
        return total

    def unmet(self, state: ConstraintState) -> list[int]:
        return [i for i in range(len(self.constraints)) if not state.met >> i & 1]

    def allowed(self, state: ConstraintState) -> Iterable[int]:
        """Tokens that make progress: the next token of the constraint being written, or
        the first token of any unmet constraint."""
        if state.node is not None:
            return state.node.children.keys()
        starts = self._starts.get(state.met)
        if starts is None:
            tokens: set[int] = set()
            for i, root in enumerate(self._roots):
                if not state.met >> i & 1:
                    tokens.update(root.children)
            starts = self._starts[state.met] = frozenset(tokens)
        return starts

    def advance(self, state: ConstraintState, token: int) -> ConstraintState:
        """The state after `token`. Leaving a partly written constraint resets it: the
        token is then tried as the start of any unmet constraint."""
        if state.node is not None:
            child = state.node.children.get(token)
            if child is not None:
                if child.terminal:
                    return ConstraintState(met=state.met | 1 << state.current)
                return ConstraintState(state.met, state.current, child, state.depth + 1)
        for i, root in enumerate(self._roots):
            if state.met >> i & 1:
                continue
            child = root.children.get(token)
            if child is None:
                continue
            if child.terminal:
                return ConstraintState(met=state.met | 1 << i)
            return ConstraintState(state.met, i, child, 1)
        if state.node is None:
            return state  # nothing changed: keep the object, saves allocations
        return ConstraintState(met=state.met)


def _insert(root: _Node, seq: TokenSeq) -> None:
    node = root
    for token in seq:
        node = node.children.setdefault(token, _Node())
    node.terminal = True


def term_alternatives(
    tokenizer: Any, term: str, *, capitalised: bool = True
) -> tuple[TokenSeq, ...]:
    """The token sequences that write `term` in the target vocabulary.

    Covers the term as a word of its own (SentencePiece "▁term", byte-level BPE "Ġterm"),
    glued to what precedes it (after a quote or hyphen), and, when `capitalised`, with a
    capital first letter (sentence start). Sequences with an unknown token are dropped:
    the model could only produce `<unk>`, which decodes to nothing.
    """
    variants = [term]
    if capitalised and term[:1].islower():
        variants.append(term[:1].upper() + term[1:])
    unk = getattr(tokenizer, "unk_token_id", None)
    found: dict[TokenSeq, None] = {}
    for variant in variants:
        for text in (variant, " " + variant):
            ids = tuple(_encode_target(tokenizer, text))
            found[ids] = None
            glued = _without_word_start(tokenizer, ids, unk)
            if glued:
                found[glued] = None
    return tuple(seq for seq in found if seq and (unk is None or unk not in seq))


def _encode_target(tokenizer: Any, text: str) -> list[int]:
    # text_target: Marian keeps a separate target SentencePiece model.
    encoded = tokenizer(text_target=text, add_special_tokens=False)["input_ids"]
    return list(encoded)


def _without_word_start(tokenizer: Any, ids: TokenSeq, unk: int | None) -> TokenSeq:
    """SentencePiece marks word starts inside the first piece ("▁Mann"); the same word
    glued to the previous token is the piece without the mark ("Mann"), when it exists."""
    if not ids:
        return ()
    piece = tokenizer.convert_ids_to_tokens(ids[0])
    if not isinstance(piece, str) or not piece.startswith("▁"):
        return ()
    rest = piece[1:]
    if not rest:
        return ids[1:]
    rest_id = tokenizer.convert_tokens_to_ids(rest)
    if rest_id is None or rest_id == unk:
        return ()
    return (int(rest_id), *ids[1:])


def build_row_constraints(tokenizer: Any, targets: Iterable[str]) -> RowConstraints:
    """One constraint per distinct target term of a row.

    A term contained in another of the row's terms ("Kind" in "Kinder") is dropped: writing
    the longer one already puts the shorter in the translation, and forcing both would
    write the word twice.
    """
    unique: dict[str, str] = {}
    for target in targets:
        text = target.strip()
        if text:
            unique.setdefault(text.casefold(), text)
    keys = list(unique)
    kept = [unique[k] for k in keys if not any(k != other and k in other for other in keys)]
    return RowConstraints([Constraint(term_alternatives(tokenizer, t), label=t) for t in kept])
