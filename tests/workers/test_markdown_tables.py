"""GFM tables: cells translated one by one, pipes and alignment rows byte for byte, and the
table still a table (same rows and cells) when markdown-it reads the output."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from batchmt.workers.formats.plan import FALLBACK, prepare_formats
from batchmt.workers.formats.restore import restore_many

_PARSER = MarkdownIt("commonmark").enable("table")
_PIPE = re.compile(r"[ \t]*(?<!\\)\|[ \t]*")
_DELIMITER = re.compile(r"^[ \t>]*\|?(?:[ \t]*:?-+:?[ \t]*\|?)+[ \t]*$")

TABLES = {
    "aligned": (
        "| Name | Value | Notes |\n|:-----|:-----:|------:|\n| Apple | red | sweet fruit |\n"
    ),
    "no outer pipes": "Name | Value\n--- | ---\nApple | red\nPear | green",
    "escaped pipe": "| Command | Meaning |\n|---|---|\n| `a \\| b` | pipe the output of a into b |",
    "inline markup": (
        "| Term | Description |\n| --- | --- |\n"
        "| **Bold** | see [the guide](https://example.com/g) for *details* |"
    ),
    "empty and numeric cells": (
        "| Item | Count | Comment |\n|---|--:|---|\n| Box | 12 |  |\n|  | 3.5 | none left |"
    ),
    "in a block quote": "> | Key | Action |\n> |-----|--------|\n> | Esc | close the dialog |",
    "between prose": (
        "## Prices\n\nThe table below lists prices.\n\n"
        "| Product | Price |\n|---|---|\n| Tea | 3 EUR |\n\nPrices include tax."
    ),
    "one column": "| Step |\n| --- |\n| open the box |\n| take the lid off |",
    "html in cells": "| Key | Text |\n|---|---|\n| a | press <b>Enter</b> to go on |",
}


def upper(texts: list[str]) -> list[str]:
    return [t.upper() for t in texts]


def with_pipes(texts: list[str]) -> list[str]:
    """A model that answers with a pipe in the middle of a cell."""
    return [t.upper().replace(" ", " | ", 1) for t in texts]


def skeleton(text: str) -> list[object]:
    """Per line: the delimiter row itself, or the pipes with the spaces around them."""
    out: list[object] = []
    for line in text.split("\n"):
        if _DELIMITER.match(line) and "-" in line:
            out.append(line)
        else:
            out.append(_PIPE.findall(line))
    return out


def shape(text: str) -> list[tuple[str, int]]:
    """Rows and cells as markdown-it reads them."""
    tokens = _PARSER.parse(text)
    rows: list[tuple[str, int]] = []
    for i, token in enumerate(tokens):
        if token.type == "tr_open":
            cells = 0
            for t in tokens[i + 1 :]:
                if t.type == "tr_close":
                    break
                cells += t.type in ("th_open", "td_open")
            rows.append(("tr", cells))
        elif token.type in ("table_open", "paragraph_open", "heading_open", "blockquote_open"):
            rows.append((token.type, 0))
    return rows


@pytest.mark.parametrize("model", [upper, with_pipes], ids=["plain", "pipes in output"])
@pytest.mark.parametrize("name", sorted(TABLES))
def test_table_cells_translated_and_table_well_formed(name: str, model: object) -> None:
    source = TABLES[name]
    translate = upper if model is upper else with_pipes
    plan = prepare_formats(source, "auto")
    assert plan.markdown
    [result] = restore_many([plan], [translate(plan.units)], None, translate)
    assert result.status != FALLBACK, result.detail
    assert shape(result.text) == shape(source)
    assert skeleton(result.text) == skeleton(source)
    # Every cell with words was a unit of its own and came back translated.
    assert result.text != source
    for line_in, line_out in zip(source.split("\n"), result.text.split("\n")):
        if not _DELIMITER.match(line_in) or "-" not in line_in:
            assert not re.search(r"\b(?:Apple|Tea|open|press|pipe)\b", line_out)


def test_each_cell_is_a_unit() -> None:
    plan = prepare_formats(TABLES["aligned"], "markdown")
    assert plan.units == ["Name", "Value", "Notes", "Apple", "red", "sweet fruit"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("| a \\| b | c |\n|---|---|\n| x | y |", "| A \\| B | C |\n|---|---|\n| X | Y |"),
        ("Use a \\* b for **bold** text.", "USE A \\* B FOR **BOLD** TEXT."),
    ],
)
def test_backslash_escapes_come_back_once(source: str, expected: str) -> None:
    """The model reads `a | b`, and the escape is written back once, not doubled."""
    plan = prepare_formats(source, "markdown")
    assert "\\" not in " ".join(plan.units)
    [result] = restore_many([plan], [upper(plan.units)], None, upper)
    assert result.text == expected
