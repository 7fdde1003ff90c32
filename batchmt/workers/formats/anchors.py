"""Putting inline markup back into a translation.

A unit is the plain text the model translates plus its anchors: `Pair`s (an inline tag or
markdown delimiter pair around a character range) and `Point`s (markup or verbatim spans
taken out of the text, e.g. `<img>`, `{name}`, a URL). Projection maps each anchor onto the
translation through a word alignment; rendering then writes the translation with every
anchor's exact source bytes, as a well-nested tree, so restored markup is well-formed by
construction. Whatever had to be forced (crossing spans clipped, words without alignment)
is reported, and the row is marked "repaired".
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Literal

from batchmt.workers.engines.base import Alignment
from batchmt.workers.formats.markup import Token

# "html+markdown": a row with both; text is HTML-escaped, and a pipe is escaped too so that
# it cannot split a GFM table cell.
Escape = Literal["html", "markdown", "html+markdown", ""]

_WORD = re.compile(r"\S+")
_LEAD_PUNCT = re.compile(r"^[^\w]*")
_TRAIL_PUNCT = re.compile(r"[^\w]*$")
# Characters the model could emit that would read as markdown syntax (`|`: a GFM table cell
# boundary; `\|` reads as a pipe everywhere else too).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]~|])")
_MD_ESCAPED = re.compile(r"\\([\\`*_\[\]~|])")


@dataclass
class Pair:
    open: str
    close: str
    start: int  # character range in Unit.text
    end: int
    seq: int  # source order, also the pair's id
    parent: int | None  # seq of the enclosing pair


@dataclass
class Point:
    raw: str
    at: int  # offset in Unit.text
    seq: int
    parent: int | None
    space_before: bool = False
    space_after: bool = False
    glued: bool = False  # a word follows with no space ("{n}th"): keep it glued


@dataclass
class Unit:
    """One independently translated block: what the model sees, and what to put back."""

    text: str
    pairs: list[Pair] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    escape: Escape = ""
    lead: str = ""
    trail: str = ""
    tokens: list[Token] = field(default_factory=list)  # the block's source, for the fallback

    def needs_alignment(self) -> bool:
        """False when every anchor lands at an edge or wraps everything: no forward pass."""
        end = len(self.text)
        return any(not (p.start == 0 and p.end == end) for p in self.pairs) or any(
            0 < p.at < end for p in self.points
        )


def unescape_text(text: str, escape: Escape) -> str:
    """Source text as the model should read it: entities decoded in HTML, and in markdown the
    backslash escapes that `escape_text` writes back (`\\*` -> `*`, `\\|` -> `|`), so the
    round trip gives the source's escapes again instead of doubling them."""
    if escape in ("html", "html+markdown"):
        text = html.unescape(text)
    if escape == "markdown":
        return _MD_ESCAPED.sub(r"\1", text)
    if escape == "html+markdown":
        return text.replace("\\|", "|")
    return text


def escape_text(text: str, escape: Escape) -> str:
    """Model output is text: escape what the row's syntax would read as markup."""
    if escape == "html":
        return html.escape(text, quote=False)
    if escape == "html+markdown":
        return html.escape(text, quote=False).replace("|", "\\|")
    if escape == "markdown":
        return _MD_SPECIAL.sub(r"\\\1", text)
    return text


def _words(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _WORD.finditer(text)]


class _Mapper:
    """Source word -> target words, from the alignment or, failing that, by position."""

    def __init__(self, source: str, target: str, alignment: Alignment | None) -> None:
        self.src, self.tgt = _words(source), _words(target)
        self.source, self.target = source, target
        usable = (
            alignment is not None
            and alignment.source_words == len(self.src)
            and alignment.target_words == len(self.tgt)
        )
        self.alignment = alignment if usable else None
        self.notes: list[str] = []
        if alignment is not None and not usable:
            self.notes.append("alignment does not match the texts: anchors placed by position")

    def targets(self, word: int) -> list[int]:
        if self.alignment is not None:
            found = self.alignment.targets_of(word)
            if found:
                return found
        self.notes.append(
            "a source word had no alignment: placed by position"
            if self.alignment is not None
            else "no alignment: anchors placed by position"
        )
        return [min(len(self.tgt) - 1, word * len(self.tgt) // max(1, len(self.src)))]

    def pair(self, start: int, end: int) -> tuple[int, int]:
        words = [i for i, (a, b) in enumerate(self.src) if a < end and b > start]
        if not self.tgt:
            return 0, 0  # an empty translation: the tags still come back, around nothing
        if not words:
            at = self.point(start)
            return at, at
        if words[0] == 0 and words[-1] == len(self.src) - 1:
            first, last = 0, len(self.tgt) - 1  # wraps everything: no alignment needed
        else:
            hits = [t for i in words for t in self.targets(i)]
            first, last = min(hits), max(hits)
        ts, te = self.tgt[first][0], self.tgt[last][1]
        # Punctuation stays outside the tags unless the source tag wrapped punctuation too:
        # "<b>lake</b>." -> "<b>See</b>.", and "over" -> "See." must not take the full stop.
        if self.source[start : start + 1].isalnum():
            ts += len(_LEAD_PUNCT.match(self.target[ts:te]).group(0))  # type: ignore[union-attr]
        if self.source[end - 1 : end].isalnum():
            te -= len(_TRAIL_PUNCT.search(self.target[ts:te]).group(0))  # type: ignore[union-attr]
        return ts, max(ts, te)

    def point(self, at: int) -> int:
        before = [i for i, (a, _) in enumerate(self.src) if a < at]
        if not before or not self.tgt:
            return 0
        if all(b <= at for _, b in self.src):
            return len(self.target)
        return self.tgt[max(self.targets(before[-1]))][1]


@dataclass
class Projection:
    text: str
    notes: list[str]


def project(unit: Unit, translation: str, alignment: Alignment | None) -> Projection:
    """Render `translation` with the unit's anchors placed through `alignment`."""
    mapper = _Mapper(unit.text, translation, alignment)
    spans = {p.seq: mapper.pair(p.start, p.end) for p in unit.pairs}
    offsets = {p.seq: mapper.point(p.at) for p in unit.points}
    text, notes = render(unit, translation, spans, offsets, list(unit.points))
    return Projection(text, sorted(set(mapper.notes)) + notes)


def render(
    unit: Unit,
    translation: str,
    spans: dict[int, tuple[int, int]],
    offsets: dict[int, int],
    points: list[Point] | None = None,
) -> tuple[str, list[str]]:
    """Write `translation` with pairs around `spans` and points at `offsets`.

    Spans are first forced into a tree (children inside parents, siblings disjoint), which
    is what makes the output well-nested whatever the alignment said.
    """
    notes: list[str] = []
    points = unit.points if points is None else points
    kids: dict[int | None, list[Pair]] = {}
    for pair in unit.pairs:
        kids.setdefault(pair.parent, []).append(pair)
    fixed: dict[int, tuple[int, int]] = {}

    def nest(parent: int | None, lo: int, hi: int) -> None:
        cursor = lo
        for pair in sorted(kids.get(parent, []), key=lambda p: (spans[p.seq][0], p.seq)):
            ts, te = spans[pair.seq]
            cs, ce = max(ts, lo, cursor), min(te, hi)
            ce = max(cs, ce)
            if (cs, ce) != (ts, te):
                notes.append("crossing or overflowing tag span clipped to keep nesting")
            fixed[pair.seq] = (cs, ce)
            nest(pair.seq, cs, ce)
            cursor = ce

    nest(None, 0, len(translation))
    by_parent: dict[int | None, list[Point]] = {}
    for point in points:
        by_parent.setdefault(point.parent if point.parent in fixed else None, []).append(point)
    out: list[str] = []

    def emit(parent: int | None, lo: int, hi: int) -> None:
        items: list[tuple[int, int, Pair | Point]] = []
        children = kids.get(parent, [])
        for pair in children:
            items.append((fixed[pair.seq][0], pair.seq, pair))
        for point in by_parent.get(parent, []):
            at = min(max(offsets[point.seq], lo), hi)
            for pair in children:  # a point never lands inside a sibling's span
                cs, ce = fixed[pair.seq]
                if cs < at < ce:
                    at = cs if point.seq < pair.seq else ce
            items.append((at, point.seq, point))
        cursor = lo
        for at, _, item in sorted(items, key=lambda i: (i[0], i[1])):
            at = max(at, cursor)
            out.append(escape_text(translation[cursor:at], unit.escape))
            cursor = at
            if isinstance(item, Pair):
                end = fixed[item.seq][1]
                out.append(item.open)
                emit(item.seq, at, end)
                out.append(item.close)
                cursor = end
                continue
            if item.glued and at < hi and translation[at].isspace():
                # "word {x}next": the separating space goes before the span, not after.
                out.append(escape_text(translation[at], unit.escape))
                cursor = at = at + 1
            before = "".join(out)[-1:]
            if item.space_before and before and not before.isspace():
                out.append(" ")
            out.append(item.raw)
            after = translation[at : at + 1]
            # A span glued to a word it was not glued to would change what it reads as.
            loose = (item.space_after and after not in ".,;:!?)]}") or (
                not item.glued and after.isalnum()
            )
            if loose and after and not after.isspace():
                out.append(" ")
        out.append(escape_text(translation[cursor:hi], unit.escape))

    emit(None, 0, len(translation))
    return unit.lead + "".join(out) + unit.trail, sorted(set(notes))
