"""Anchors land on the right words, and the guarantee holds whatever the model says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchmt.workers.engines.base import Alignment
from batchmt.workers.formats.plan import (
    prepare_formats,
)
from batchmt.workers.formats.restore import restore_many, validate
from batchmt.workers.formats.sn_tags import restore_from_sn, sn_sources
from tests.workers.restore_one import restore_one

# Rows a document pipeline meets; every one must come back with its markup intact.
TRICKY = [
    '<li class="item"><a href="https://example.com/p?id=42&amp;x=1">A</a> boy <i>sits</i>.</li>',
    "<p>A <b>man <i>sleeping</i> in</b> a green room.</p>",
    '<p title="x > y">A dog <span class="hl" data-k="7">runs</span> home.</p>',
    "<p>Tom &amp; Jerry <!-- c --> play <br> outside <img src='a.png'/> today.</p>",
    '<p>Call <span translate="no">ACME Corp</span> at 555 or me@example.com.</p>',
    "Hi {name}, you have {{count}} new %s and %(total)d at ${price} [[LINK]].",
    "Visit https://example.com/a?b=1 or www.example.org for 3,141.59 deals.",
    "- A **young** boy swings a *bat* at [the ball](https://x.y/z). `code_id_7`",
    "# Heading with `code`\n\n```\nkeep = 'me'\n```\n1. First _item_ here",
    "<b>bold <i>both</b> unbalanced </u> text",
    "<p><b>Hello {name}</b>, <a href='#'><img src='x.png'/></a> world</p>",
    "A plain sentence with no markup.",
]
GARBAGE = ["", "x", "a b c d e f g h i j k l m n o p", "<b> ** ` {z} [[", "Ein Hund. Zwei."]


def _upper(texts: list[str]) -> list[str]:
    return [t.upper() for t in texts]


@pytest.mark.parametrize("row", TRICKY)
@pytest.mark.parametrize("output", GARBAGE)
def test_any_output_restores_with_markup_intact(row: str, output: str) -> None:
    plan = prepare_formats(row)
    result = restore_one(plan, [output] * len(plan.units), None, _upper)
    assert validate(plan, result.text) == []
    assert result.status in ("none", "ok", "repaired", "fallback")


def test_tags_follow_the_alignment() -> None:
    plan = prepare_formats("<p>A <b>brown</b> dog runs.</p>")
    # target "Ein brauner Hund rennt." ; brown(1) -> brauner(1)
    alignment = Alignment(best_source=(0, 1, 2, 3), best_target=(0, 1, 2, 3))
    result = restore_one(plan, ["Ein brauner Hund rennt."], lambda s, t: [alignment])
    assert result.text == "<p>Ein <b>brauner</b> Hund rennt.</p>"
    assert result.status == "ok"


def test_reordering_moves_the_tag_with_its_word() -> None:
    plan = prepare_formats("I <i>have seen</i> the dog.")
    # "Ich habe den Hund gesehen." : have->habe(1), seen->gesehen(4)
    alignment = Alignment(best_source=(0, 1, 3, 4, 2), best_target=(0, 1, 4, 2, 3))
    result = restore_one(plan, ["Ich habe den Hund gesehen."], lambda s, t: [alignment])
    assert result.text == "Ich <i>habe den Hund gesehen</i>."


def test_crossing_spans_are_clipped_and_reported() -> None:
    plan = prepare_formats("<b>a b</b> <i>c d</i>")
    # b-words and i-words both claim target word 1: the second is clipped.
    alignment = Alignment(best_source=(0, 2, 1, 3), best_target=(0, 2, 1, 3))
    result = restore_one(plan, ["w x y z"], lambda s, t: [alignment])
    assert validate(plan, result.text) == []
    assert result.status == "repaired" and "clipped" in (result.detail or "")


def test_restore_many_aligns_once() -> None:
    calls: list[int] = []

    def align(sources: list[str], targets: list[str]) -> list[Alignment]:
        calls.append(len(sources))
        return [
            Alignment(tuple(range(len(t.split()))), tuple(range(len(s.split()))))
            for s, t in zip(sources, targets)
        ]

    plans = [
        prepare_formats("a <b>b</b> c"),
        prepare_formats("<i>all</i>"),
        prepare_formats("d <i>e</i> f"),
    ]
    results = restore_many(plans, [["x y z"], ["alles"], ["u v w"]], align, None)
    assert calls == [2]  # the wrapped-everything row needs no alignment
    assert [r.text for r in results] == ["x <b>y</b> z", "<i>alles</i>", "u <i>v</i> w"]


@pytest.fixture(scope="module")
def tiny(tiny_marian: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_marian))
    return AutoModelForSeq2SeqLM.from_pretrained(str(tiny_marian)).eval(), tokenizer


@pytest.mark.parametrize("row", TRICKY)
def test_tiny_random_model_keeps_markup(row: str, tiny: tuple[Any, Any]) -> None:
    """Garbage translations from a random-weight model, real alignment, intact markup."""
    from batchmt.workers.engines.alignment import align

    model, tokenizer = tiny

    def translate(texts: list[str]) -> list[str]:
        if not texts:
            return []
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        ids = model.generate(**batch, num_beams=2, max_new_tokens=12)
        return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]

    plan = prepare_formats(row)
    result = restore_one(
        plan, translate(plan.units), lambda s, t: align(model, tokenizer, s, t), translate
    )
    assert validate(plan, result.text) == []


@pytest.mark.parametrize("row", TRICKY)
def test_sn_round_trip(row: str) -> None:
    plan = prepare_formats(row)
    sources = sn_sources(plan)
    # A model that copies the formatted source restores the row's markup exactly.
    result = restore_from_sn(plan, [f"<target>{s}</target>" for s in sources], _upper)
    assert validate(plan, result.text) == []
    assert result.status in ("none", "ok")


def test_sn_mismatch_falls_back() -> None:
    plan = prepare_formats("<p>A <b>dog</b> and a <i>cat</i>.</p>")
    assert sn_sources(plan) == ["A <sn>dog</sn> and a <sn>cat</sn>."]
    result = restore_from_sn(plan, ["Ein <sn>Hund</sn> und eine Katze."], _upper)
    assert result.status == "fallback"
    assert result.text == "<p>A <b>DOG</b> AND A <i>CAT</i>.</p>"
