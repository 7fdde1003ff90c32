"""Lexical constraints as token sequences, and the per-hypothesis state that tracks them.

A constraint is one target term. It is *disjunctive*: the term can be written by several
token sequences (with or without SentencePiece's word-start "▁", capitalised at sentence
start), and producing any one of them satisfies it. The alternatives of a constraint share
one trie, so a hypothesis follows all of them at once and a divergence resets it.

States are immutable and cheap to copy: the search (`workers/decoding/search.py`) keeps one
per hypothesis and calls `advance` for every candidate token it scores.

A constraint may also carry the model's own renderings of its source term (`avoid`, learnt
by `workers/decoding/renderings.py`): the search blocks them for the whole row and lets the
term's first token take their probability, so the forced term replaces the default
rendering where the model would write it instead of being bolted on beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchmt.pipeline.text.glossary import term_variants

TokenSeq = tuple[int, ...]


@dataclass(eq=False)
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    # True when some alternative ends here: reaching it meets the constraint.
    terminal: bool = False
    # Most and fewest tokens from here to the first terminal node on any path (0 at a
    # terminal): the length budget the rest of the term may need, and must have.
    rest: int = 0
    least: int = 0


@dataclass(frozen=True)
class Constraint:
    """One term a translation must contain, as its alternative token sequences."""

    alternatives: tuple[TokenSeq, ...]
    label: str = ""  # the term as text, for reports
    # Token sequences of the model's default rendering of the term's source span, blocked
    # in the whole row: the forced term must replace it, not stand beside it.
    avoid: tuple[TokenSeq, ...] = ()
    # (first token of an alternative, default-rendering tokens): while the term is unmet,
    # that first token may score as well as the best of those tokens, so the term lands
    # where the model would have rendered its source span.
    takeover: tuple[tuple[int, TokenSeq], ...] = ()

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
        #: Longest alternative per constraint (up to its first terminal), for `needed`.
        self._max_len = [_set_rest(root) for root in self._roots]
        self.most_needed = sum(self._max_len)
        # The most progress a hypothesis can make: the number of search banks minus one.
        self.max_progress = sum(self._min_len)
        self._starts: dict[int, frozenset[int]] = {}
        self._compile_avoid()

    def _compile_avoid(self) -> None:
        """Blocked default renderings, minus every token a constraint itself needs: a block
        must never cost the guarantee."""
        needed: set[int] = {t for c in self.constraints for alt in c.alternatives for t in alt}
        always: set[int] = set()
        after: dict[TokenSeq, set[int]] = {}
        for constraint in self.constraints:
            for seq in constraint.avoid:
                if not seq or seq[-1] in needed:
                    continue
                if len(seq) == 1:
                    always.add(seq[0])
                else:
                    after.setdefault(seq[:-1], set()).add(seq[-1])
        #: Tokens no hypothesis of the row may write.
        self.blocked = sorted(always)
        #: Prefix -> tokens blocked right after it (multi-token default renderings).
        self.blocked_after = {k: sorted(v) for k, v in after.items()}
        self.blocked_prefix_lengths = sorted({len(k) for k in after})
        self.has_takeover = any(c.takeover for c in self.constraints)
        self.has_avoid = bool(self.blocked or self.blocked_after or self.has_takeover)
        self._takeovers: dict[tuple[int, int], list[tuple[int, TokenSeq]]] = {}

    def takeovers(self, state: ConstraintState) -> list[tuple[int, TokenSeq]]:
        """(first token, default tokens) live for this state, one entry per first token:
        those of the unmet constraints that the hypothesis is not already writing."""
        key = (state.met, state.current)
        found = self._takeovers.get(key)
        if found is None:
            merged: dict[int, set[int]] = {}
            for i, constraint in enumerate(self.constraints):
                if state.met >> i & 1 or state.current == i:
                    continue
                for first, ids in constraint.takeover:
                    merged.setdefault(first, set()).update(ids)
            found = [(first, tuple(sorted(ids))) for first, ids in merged.items()]
            self._takeovers[key] = found
        return found

    def needed(self, state: ConstraintState) -> int:
        """Tokens that meet every satisfiable constraint from here, whichever alternative
        the model follows: the longest rest of the one being written plus the longest
        alternative of each other unmet one. The longest, not the shortest: the shortest
        may be one the model cannot write (a glued piece it gives -inf), and forcing must
        start while every alternative still fits."""
        total = state.node.rest if state.node is not None else 0
        for i, n in enumerate(self._max_len):
            if n and i != state.current and not state.met >> i & 1:
                total += n
        return total

    def least_needed(self, state: ConstraintState) -> int:
        """Fewest tokens that meet every satisfiable constraint from here: the terms fit a
        length budget at all only when this does."""
        total = state.node.least if state.node is not None else 0
        for i, n in enumerate(self._min_len):
            if n and i != state.current and not state.met >> i & 1:
                total += n
        return total

    def squeezed(self, state: ConstraintState, budget: int) -> list[int]:
        """What may follow when `budget` tokens are left and the terms may need them all:
        tokens that advance a term, and of those, when the budget is tighter than the
        longest way, the ones after which the shortest way still fits."""
        tokens = list(self.allowed(state))
        if self.needed(state) <= budget:
            return tokens
        fitting = [t for t in tokens if self.least_needed(self.advance(state, t)) < budget]
        return fitting or tokens

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


def _set_rest(node: _Node) -> int:
    # Reaching a terminal meets the constraint at once (`advance`), so paths stop there.
    longest, least = 0, 0
    for child in node.children.values():
        _set_rest(child)
        longest = max(longest, 1 + (0 if child.terminal else child.rest))
        shortest = 1 + (0 if child.terminal else child.least)
        least = shortest if not least else min(least, shortest)
    node.rest, node.least = longest, least
    return longest


def term_alternatives(
    tokenizer: Any, term: str, *, capitalised: bool = True, extensions: Extensions | None = None
) -> tuple[TokenSeq, ...]:
    """The token sequences that write `term` in the target vocabulary.

    Covers the term as a word of its own (SentencePiece "▁term", byte-level BPE "Ġterm"),
    glued to what precedes it (after a quote or hyphen), and, when `capitalised`, with a
    capital first letter (sentence start). Sequences with an unknown token are dropped:
    the model could only produce `<unk>`, which decodes to nothing. With `extensions`, the
    last piece may also be any vocabulary piece that extends it ("ĠHerr" -> "ĠHerrn"): an
    inflected form the model writes in one piece contains the term, as `check_terms` sees
    it, and must not make the search bolt the base form on elsewhere.
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
    if extensions is not None:
        for seq in [s for s in found if s]:
            found.update(dict.fromkeys((*seq[:-1], e) for e in extensions(seq[-1])))
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


def _word_forms(tokenizer: Any, word: str) -> list[tuple[str, TokenSeq]]:
    """(kind, tokens) of a word as the model writes it: at the start of the output and after
    a space, as given and capitalised. The kind pairs a default rendering with the forced
    term written the same way, so a takeover never glues a word onto its neighbour."""
    variants = [("", word)]
    if word[:1].islower():
        variants.append(("cap", word[:1].upper() + word[1:]))
    forms = []
    for kind, variant in variants:
        for space in ("", " "):
            forms.append((kind + space, tuple(_encode_target(tokenizer, space + variant))))
    return forms


#: A token -> the ids of the vocabulary pieces that extend its piece ("▁Hund" -> "▁Hunde").
Extensions = Callable[[int], list[int]]
#: What a term avoids: blocked token sequences, and (first token, default tokens) takeovers.
Avoid = tuple[tuple[TokenSeq, ...], tuple[tuple[int, TokenSeq], ...]]


def avoid_sequences(
    tokenizer: Any, target: str, renderings: Iterable[str], extensions: Extensions | None = None
) -> Avoid:
    """Blocked sequences and takeover pairs for one target term from the model's renderings
    of its source. A rendering that starts a target form or that a target form starts with
    ("Herr" / "Herrn") is not a default to avoid; one inside it is ("Kind" for
    "Kleinkind": the block never touches a token the term needs). `extensions(piece)`,
    when given, lists the ids of vocabulary pieces that extend a one-token rendering
    ("▁Hund" -> "▁Hunde"): the plural of the default is still the default, so they are
    blocked with it. The takeover source of a longer rendering is its first piece ("▁T" of
    "T-Shirt"): by its second piece the model has already committed to the default."""
    variants = term_variants(target)
    folded = [t.casefold() for t in variants]
    avoid: dict[TokenSeq, None] = {}
    takeover: dict[tuple[int, TokenSeq], None] = {}
    starts: dict[str, set[int]] = {}
    for variant in variants:
        for kind, seq in _word_forms(tokenizer, variant):
            if seq:
                starts.setdefault(kind, set()).add(seq[0])
    unk = getattr(tokenizer, "unk_token_id", None)
    for word in renderings:
        low = word.casefold()
        if not low or any(f.startswith(low) or low.startswith(f) for f in folded):
            continue
        for kind, seq in _word_forms(tokenizer, word):
            if not seq or (unk is not None and unk in seq):
                continue
            group = [seq]
            if len(seq) == 1 and extensions is not None:
                group += [(i,) for i in extensions(seq[0])]
            avoid.update(dict.fromkeys(group))
            ids = tuple(sorted({g[0] for g in group}))
            for first in sorted(starts.get(kind, ())):
                takeover[(first, ids)] = None
    return tuple(avoid), tuple(takeover)


def build_row_constraints(
    tokenizer: Any,
    targets: Iterable[str],
    *,
    avoid: Mapping[str, Avoid] | None = None,
    extensions: Extensions | None = None,
) -> RowConstraints:
    """One constraint per distinct target term of a row.

    A target may list variants ("Herr|Herrn"): any of them meets the constraint. A term
    contained in another of the row's terms ("Kind" in "Kinder") is dropped: writing the
    longer one already puts the shorter in the translation, and forcing both would write
    the word twice. `avoid`: target -> what the row avoids for that term (the model's own
    renderings of its source, from `avoid_sequences`); `extensions`: see `term_alternatives`.
    """
    unique: dict[str, str] = {}
    for target in targets:
        text = target.strip()
        if text:
            unique.setdefault(text.casefold(), text)
    forms = {k: [f.casefold() for f in term_variants(t)] for k, t in unique.items()}

    def writes(other: str, key: str) -> bool:
        # Writing any form of `other` writes some form of `key`.
        return all(any(f in g for f in forms[key]) for g in forms[other])

    keys = list(unique)
    kept = [
        unique[k]
        for n, k in enumerate(keys)
        # Two terms that write each other are one: the first listed stays.
        if not any(
            o != k and writes(o, k) and (m < n or not writes(k, o)) for m, o in enumerate(keys)
        )
    ]
    constraints = []
    for target in kept:
        variants = term_variants(target)
        alternatives = tuple(
            dict.fromkeys(
                a for v in variants for a in term_alternatives(tokenizer, v, extensions=extensions)
            )
        )
        blocked, takeover = avoid.get(target, ((), ())) if avoid else ((), ())
        constraints.append(Constraint(alternatives, target, blocked, takeover))
    return RowConstraints(constraints)
