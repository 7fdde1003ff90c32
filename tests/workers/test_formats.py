"""Detection, planning and the restore guarantee, over a table of tricky rows."""

from __future__ import annotations

import pytest

from batchmt.workers.formats.markup import detect, lex, unbalanced
from batchmt.workers.formats.plan import (
    prepare_formats,
)
from batchmt.workers.formats.restore import validate
from tests.workers.restore_one import restore_one

# (row, markup/spans that must be lexed as non-text, exactly as written)
LEXED = [
    ('<b title="a > b">x</b>', ['<b title="a > b">', "</b>"]),
    ("<p>Tom &amp; Jerry</p>", ["<p>", "</p>"]),
    (
        "a <br> b <br/> c <img src='x.png' alt=\"1 > 0\"/>",
        ["<br>", "<br/>", "<img src='x.png' alt=\"1 > 0\"/>"],
    ),
    ("a <!-- note > here --> b", ["<!-- note > here -->"]),
    (
        '<span translate="no">Keep <b>me</b></span> ok',
        ['<span translate="no">Keep <b>me</b></span>'],
    ),
    ('<em class="x notranslate">ACME</em> sells', ['<em class="x notranslate">ACME</em>']),
    (
        "Hi {name}, {{count}} %s %(total)d ${price} [[LINK]] {0}",
        ["{name}", "{{count}}", "%s", "%(total)d", "${price}", "[[LINK]]", "{0}"],
    ),
    (
        "see https://example.com/a?b=1&c=2. or www.example.org",
        ["https://example.com/a?b=1&c=2", "www.example.org"],
    ),
    ("mail me@example.com now", ["me@example.com"]),
    ("it costs 3,141.59 or 12 euros, a 3-year-old", ["3,141.59", "12"]),
    ("run `pip install x` now", ["`pip install x`"]),
    (
        "- a **bold** and *it* and [link](https://x.y)",
        ["- ", "**", "**", "*", "*", "[", "](https://x.y)"],
    ),
    ("# Title\n\n```py\nx = 1\n```\n1. item", ["# ", "\n\n", "```py\nx = 1\n```", "\n", "1. "]),
]


@pytest.mark.parametrize(("row", "expected"), LEXED)
def test_lexer_finds_markup_and_spans_verbatim(row: str, expected: list[str]) -> None:
    html, markdown = detect(row, "auto")
    tokens = lex(row, html=html, markdown=markdown)
    assert "".join(t.raw for t in tokens) == row
    assert [t.raw for t in tokens if t.kind != "text"] == expected


UNBALANCED = [
    "<b>bold <i>both</b> tail",
    "text </u> stray closer",
    "<p>open paragraph",
    "**not closed and `tick",
]


@pytest.mark.parametrize("row", UNBALANCED)
def test_unbalanced_source_is_reported_and_kept(row: str) -> None:
    plan = prepare_formats(row)
    html, markdown = detect(row, "auto")
    bad = unbalanced(lex(row, html=html, markdown=markdown))
    result = restore_one(plan, [u.upper() for u in plan.units], None, None)
    assert validate(plan, result.text) == []
    for token in bad:
        assert token.raw in result.text
    if bad:
        assert result.detail is not None and "unbalanced source markup" in result.detail


def test_blocks_split_units_and_keep_block_markup() -> None:
    plan = prepare_formats('<ul><li class="a">One dog.</li><li>Two cats.</li></ul>')
    assert plan.units == ["One dog.", "Two cats."]
    result = restore_one(plan, ["Ein Hund.", "Zwei Katzen."])
    assert result.text == '<ul><li class="a">Ein Hund.</li><li>Zwei Katzen.</li></ul>'
    assert result.status == "ok"


def test_block_without_words_is_not_translated() -> None:
    plan = prepare_formats("A girl runs. <br/> https://x.org/1.jpg 3,141.59")
    assert plan.units == ["A girl runs."]
    result = restore_one(plan, ["Ein Mädchen rennt."])
    assert result.text == "Ein Mädchen rennt. <br/> https://x.org/1.jpg 3,141.59"


def test_verbatim_spans_leave_the_text_and_come_back() -> None:
    plan = prepare_formats("A dog runs. ${price} https://cdn.x.org/1.jpg 3,141.59")
    assert plan.units == ["A dog runs."]
    result = restore_one(plan, ["Ein Hund rennt."])
    assert result.text == "Ein Hund rennt. ${price} https://cdn.x.org/1.jpg 3,141.59"


def test_entities_are_text_for_the_model_and_escaped_back() -> None:
    plan = prepare_formats("<p>Tom &amp; Jerry</p>")
    assert plan.units == ["Tom & Jerry"]
    assert restore_one(plan, ["Tom & Jerry <3"]).text == "<p>Tom &amp; Jerry &lt;3</p>"


def test_plain_row_is_status_none() -> None:
    plan = prepare_formats("A dog runs.")
    assert not plan.has_markup
    result = restore_one(plan, ["Ein Hund rennt."])
    assert (result.text, result.status) == ("Ein Hund rennt.", "none")


def test_text_mode_does_nothing() -> None:
    plan = prepare_formats("<b>x</b> {y}", "text")
    assert plan.units == ["<b>x</b> {y}"] and not plan.has_markup


def test_unknown_mode_says_what_to_use() -> None:
    with pytest.raises(ValueError, match="use auto, html, markdown or text"):
        prepare_formats("x", "xml")


def test_markup_the_model_invents_triggers_the_fallback() -> None:
    plan = prepare_formats("<p>A <b>dog</b> runs.</p>")
    # Markdown mode escapes nothing HTML-ish, so force a bad restore through validation.
    assert validate(plan, "<p>Ein <b>Hund</b> rennt.</p><b>") != []
    result = restore_one(plan, ["Ein Hund rennt."], None, lambda xs: [x.upper() for x in xs])
    assert result.status in ("ok", "repaired")
    assert validate(plan, result.text) == []


def test_wrong_number_of_translations_is_refused() -> None:
    plan = prepare_formats("<p>a</p><p>b</p>")
    with pytest.raises(ValueError, match=r"one translation per plan\.units entry"):
        restore_one(plan, ["x"])
