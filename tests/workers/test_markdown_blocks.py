"""Markdown blocks against the CommonMark spec's own examples, and GFM tables.

Each row goes through the real path (prepare_formats -> a fake translator that upper-cases
every unit -> restore) and the output is parsed again by markdown-it: the block structure
must be the same, and code blocks, link reference definitions and HTML blocks' tags must
come back byte for byte, while the prose around them is translated.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token as MdToken

from batchmt.workers.formats.plan import FALLBACK, FormatPlan, prepare_formats
from batchmt.workers.formats.restore import restore_many

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "commonmark_blocks.json"
EXAMPLES = json.loads(FIXTURE.read_text(encoding="utf-8"))["examples"]
_PARSER = MarkdownIt("commonmark", {"inline_definitions": True}).enable("table")
_TAG = re.compile(r"<[^<>]*>")


def upper(texts: list[str]) -> list[str]:
    return [t.upper() for t in texts]


def translate(text: str, mode: str = "markdown") -> tuple[FormatPlan, str, str]:
    plan = prepare_formats(text, mode)
    [result] = restore_many([plan], [upper(plan.units)], None, upper)
    return plan, result.text, result.status


def blocks(text: str) -> list[MdToken]:
    return [t for t in _PARSER.parse(text) if t.type != "inline"]


def protected(token: MdToken) -> object:
    """What of a block must survive translation unchanged."""
    if token.type in ("code_block", "fence"):
        return (token.info, token.content)
    if token.type == "definition":
        return dict(token.meta)
    if token.type == "html_block":
        return _TAG.findall(token.content)
    return None


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e['example']}")
def test_commonmark_block_examples_keep_every_protected_byte(example: dict[str, str]) -> None:
    source = example["markdown"]
    plan, output, status = translate(source)
    before, after = blocks(source), blocks(output)
    assert [(t.type, t.level) for t in after] == [(t.type, t.level) for t in before]
    assert [protected(t) for t in after] == [protected(t) for t in before]
    # Not passed by handing back the source: a row with prose has it translated.
    if plan.units:
        assert status != FALLBACK or output != source
        assert output != source


def test_spec_examples_cover_the_sections() -> None:
    sections = {e["section"] for e in EXAMPLES}
    assert sections == {
        "Indented code blocks",
        "Fenced code blocks",
        "HTML blocks",
        "Link reference definitions",
    }
    assert len(EXAMPLES) == 112


def test_indented_code_is_not_translated() -> None:
    text = "Loop over the items:\n\n    for x in items: print(x)\n\nThat is all."
    _, output, _ = translate(text, "auto")
    assert output == "LOOP OVER THE ITEMS:\n\n    for x in items: print(x)\n\nTHAT IS ALL."


def test_reference_links_keep_their_labels() -> None:
    text = (
        "Read [the docs][ref], the [guide][] and [faq].\n\n"
        "[ref]: https://example.com/docs\n[guide]: https://example.com/guide\n"
        "[FAQ]: https://example.com/faq 'Questions'\n"
    )
    _, output, _ = translate(text, "auto")
    prose, definitions = output.split("\n\n", 1)
    assert definitions == text.split("\n\n", 1)[1]
    # The link text of a full reference is translated; labels, and the text of collapsed
    # and shortcut references (which is their label), are not. (Where a span lands among
    # the words is the aligner's business; this test has none.)
    assert "[THE DOCS][ref]" in prose
    assert "[guide][]" in prose
    assert "[faq]" in prose
    assert "READ" in prose


def test_front_matter_is_kept() -> None:
    text = "---\ntitle: Hello world\ntags: [a, b]\n---\n# Hello world\n\nSome text."
    _, output, _ = translate(text, "markdown")
    assert output == "---\ntitle: Hello world\ntags: [a, b]\n---\n# HELLO WORLD\n\nSOME TEXT."
