"""Markdown block structure from a CommonMark parser, as byte ranges of the row.

markdown-it-py decides what is a code block (fenced or indented), an HTML block, a GFM
table or a link reference definition, by CommonMark's rules (indentation after lists, the
seven kinds of HTML block, lazy continuation lines); its tokens carry source line numbers,
which are mapped back here to offsets in the row. Everything between these regions is left
to the line lexer in markup.py, whose inline handling is byte-exact.

Front matter (`---` YAML or `+++` TOML at the very start) is not CommonMark; it is found
first, blanked for the parser (so line numbers still agree) and kept verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from markdown_it import MarkdownIt

RegionKind = Literal["code", "html", "table", "definition", "front_matter"]

_FRONT_MATTER = re.compile(
    r"\A(---|\+\+\+)[ \t]*\r?\n(?:.*?\r?\n)?(?:\1|\.\.\.)[ \t]*$", re.S | re.M
)
# The parser reads \r\n and a lone \r as one line break each; offsets count them alike.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# A GFM cell boundary: a pipe that no backslash escapes (GFM splits cells on those even
# inside code spans), with the spaces around it.
_CELL_PIPE = re.compile(r"[ \t]*(?<!\\)\|[ \t]*")
# Container prefixes (block quote markers, list item indentation) before a nested table row.
_CONTAINER = re.compile(r"(?:[ \t]*>[ \t]?)*(?:[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+)?[ \t]*")


@dataclass(frozen=True)
class TableRow:
    start: int
    end: int  # the line, without its line break
    delimiter: bool  # the alignment row (`|:---|--:|`): kept byte for byte


@dataclass(frozen=True)
class Region:
    kind: RegionKind
    start: int
    end: int  # exclusive; the last line's break is not part of the region
    rows: tuple[TableRow, ...] = field(default=())
    nested: bool = False  # inside a block quote or list item: lines carry a container prefix


@dataclass(frozen=True)
class Cell:
    start: int
    end: int  # the cell's text, without the pipes and the spaces around them


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # `inline_definitions` turns link reference definitions into tokens with line maps
    # (CommonMark otherwise drops them from the token stream). Only blocks are wanted here:
    # the core "inline" rule (half the parse time) is off, inline syntax stays ours.
    parser = MarkdownIt("commonmark", {"inline_definitions": True}).enable("table")
    return parser.disable("inline")


def regions(text: str) -> list[Region]:
    """The row's protected and table regions, in order and disjoint."""
    lines = _line_starts(text)
    found: list[Region] = []
    body = text
    front = _FRONT_MATTER.match(text)
    if front:
        found.append(Region("front_matter", 0, front.end()))
        # Blank it, keeping its line breaks, so line numbers match the original.
        body = re.sub(r"[^\r\n]", " ", text[: front.end()]) + text[front.end() :]
    tokens = _parser().parse(body)
    for i, token in enumerate(tokens):
        if token.map is None:
            continue
        first, last = token.map
        start, end = lines[first], _line_end(text, lines, last)
        if end <= start:
            continue
        if token.type in ("code_block", "fence"):
            found.append(Region("code", start, end))
        elif token.type == "html_block":
            found.append(Region("html", start, end, nested=token.level > 0))
        elif token.type == "definition":
            found.append(Region("definition", start, end))
        elif token.type == "table_open":
            rows = []
            j = i + 1  # up to this table's end (an index, not a slice: linear in the row)
            while j < len(tokens) and tokens[j].type != "table_close":
                row_map = tokens[j].map
                if tokens[j].type == "tr_open" and row_map is not None:
                    end_of_row = _line_end(text, lines, row_map[1])
                    rows.append(TableRow(lines[row_map[0]], end_of_row, False))
                j += 1
            if rows:  # the delimiter row is the line after the header row
                rows.insert(1, TableRow(lines[first + 1], _line_end(text, lines, first + 2), True))
            found.append(Region("table", start, end, tuple(rows), nested=token.level > 0))
    return _outermost(found)


def cells(text: str, row: TableRow, nested: bool) -> list[Cell]:
    """The cells of a table row that is not the delimiter row; offsets index `text`. A
    container prefix (`> `) comes before the first cell, so it stays with the pipes."""
    begin = row.start
    if nested:
        prefix = _CONTAINER.match(text, row.start, row.end)
        begin = prefix.end() if prefix else row.start
    out: list[Cell] = []
    pos = begin
    for pipe in _CELL_PIPE.finditer(text, begin, row.end):
        if pipe.start() > pos:
            out.append(Cell(pos, pipe.start()))
        pos = pipe.end()
    tail = text[pos : row.end].rstrip(" \t")
    if tail:
        out.append(Cell(pos, pos + len(tail)))
    return out


def _line_starts(text: str) -> list[int]:
    return [0] + [m.end() for m in _LINE_BREAK.finditer(text)] + [len(text) + 1]


def _line_end(text: str, lines: list[int], line: int) -> int:
    """Offset just past the last character of line `line - 1`, before its line break."""
    if line >= len(lines) - 1:
        return len(text)
    end = lines[line]
    return end - 2 if text[end - 2 : end] == "\r\n" else end - 1


def _outermost(found: list[Region]) -> list[Region]:
    """Regions sorted, dropping any that lies inside an earlier one."""
    out: list[Region] = []
    for region in sorted(found, key=lambda r: (r.start, -r.end)):
        if out and region.start < out[-1].end:
            continue
        out.append(region)
    return out
