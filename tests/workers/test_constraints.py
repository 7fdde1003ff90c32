"""Constraint states: advancing, resetting on divergence, disjunctive alternatives."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from batchmt.workers.decoding.constraints import (
    Constraint,
    RowConstraints,
    build_row_constraints,
    term_alternatives,
)


def walk(row: RowConstraints, tokens: list[int]) -> RowConstraints | object:
    state = row.initial()
    for token in tokens:
        state = row.advance(state, token)
    return state


def test_advance_meets_a_constraint_token_by_token() -> None:
    row = RowConstraints([Constraint(((5, 6, 7),))])
    state = row.initial()
    assert set(row.allowed(state)) == {5}
    state = row.advance(state, 5)
    assert set(row.allowed(state)) == {6}
    assert row.progress(state) == 1 and not row.done(state)
    state = row.advance(row.advance(state, 6), 7)
    assert row.done(state) and row.progress(state) == 3 and row.unmet(state) == []


def test_divergence_resets_and_the_token_may_start_again() -> None:
    row = RowConstraints([Constraint(((5, 6),))])
    state = row.advance(row.initial(), 5)
    reset = row.advance(state, 9)
    assert reset.current == -1 and row.progress(reset) == 0
    restarted = row.advance(state, 5)  # "5 5 6": the second 5 starts the term again
    assert row.done(row.advance(restarted, 6))


def test_any_alternative_satisfies_a_disjunctive_constraint() -> None:
    row = RowConstraints([Constraint(((5, 6), (8,), (5, 9)))])
    for tokens in ([5, 6], [8], [5, 9], [1, 5, 9, 2]):
        assert row.done(walk(row, tokens)), tokens
    assert not row.done(walk(row, [5, 7, 6]))


def test_several_constraints_are_tracked_independently() -> None:
    row = RowConstraints([Constraint(((1, 2),), "a"), Constraint(((3,),), "b")])
    state = walk(row, [3, 1, 2])
    assert row.done(state)
    half = walk(row, [1, 2])
    assert [row.constraints[i].label for i in row.unmet(half)] == ["b"]
    assert set(row.allowed(half)) == {3}


def test_unsatisfiable_constraints_do_not_block_the_end_but_stay_unmet() -> None:
    row = RowConstraints([Constraint((), "unknown"), Constraint(((4,),), "ok")])
    state = walk(row, [4])
    assert row.done(state)
    assert row.unmet(state) == [0]


DEMO = Path(__file__).resolve().parents[2] / "models" / "demo-en-de"


def test_term_alternatives_cover_word_start_glued_and_capitalised() -> None:
    tok = AutoTokenizer.from_pretrained(str(DEMO))
    pieces = [tok.convert_ids_to_tokens(list(a)) for a in term_alternatives(tok, "hund")]
    assert sorted(pieces) == sorted([["▁", "hund"], ["hund"], ["▁Hund"]])
    pieces = [tok.convert_ids_to_tokens(list(a)) for a in term_alternatives(tok, "T-Shirt")]
    assert sorted(pieces) == sorted([["▁T", "-", "Shirt"], ["T", "-", "Shirt"]])


def test_pieces_unknown_to_the_vocabulary_are_not_alternatives(tiny_marian: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(tiny_marian))  # lower-case vocabulary only
    alts = term_alternatives(tok, "hund")
    assert [tok.decode(list(a)) for a in alts] == ["hund"]
    assert term_alternatives(tok, "Ü") == ()


def test_row_constraints_drop_terms_contained_in_longer_ones(tiny_marian: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(tiny_marian))
    row = build_row_constraints(tok, ["kind", "kinder", "Kind", "hund"])
    assert [c.label for c in row.constraints] == ["kinder", "hund"]
