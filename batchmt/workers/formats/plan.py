"""Format anchoring, first half: plan what of a row to translate (`restore.py` puts the
markup back around the translations).

    plan = prepare_formats(row_text, FormatOptions.from_spec(spec.formats))
    translations = <translate plan.units>                  # plain texts, one per block
    [result] = restore_many([plan], [translations], align, translate)
    result.text, result.status, result.detail

Block markup (p, li, div, h1.., br, table cells, markdown list/heading lines, code blocks,
HTML blocks, GFM table pipes and alignment rows, reference definitions, front matter) is
kept exactly as in the source and splits the row into units translated independently.
Inline markup becomes anchors (`anchors.py`) placed back by word alignment.
Verbatim spans (placeholders, URLs, emails, numbers, code, notranslate, comments) are taken
out of the text and re-inserted by alignment. (Keeping them in the text under identity
constraints measured worse on 300 dev_formats rows, demo en-de, beam 4: 39.52 BLEU with 35
fallbacks, against 39.79 cut out and aligned.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from batchmt.pipeline.spec import FormatsSpec
from batchmt.workers.formats.anchors import Escape, Pair, Point, Unit, unescape_text
from batchmt.workers.formats.markup import DEFAULT_RULES, TagRules, Token, detect, lex, unbalanced

Translator = Callable[[list[str]], list[str]]

# Row statuses. A row without any markup or protected span is "none", so quality reports
# can tell formatted rows from plain ones.
NONE, OK, REPAIRED, FALLBACK = "none", "ok", "repaired", "fallback"
_HAS_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class FormatOptions:
    """A job's `formats` section, as the workers use it."""

    mode: str = "auto"  # auto | html | markdown | text
    rules: TagRules = DEFAULT_RULES

    @classmethod
    def from_spec(cls, spec: FormatsSpec) -> FormatOptions:
        rules = TagRules(frozenset(spec.ignore_tags), frozenset(spec.non_splitting_tags))
        return cls(spec.mode, rules)


@dataclass
class FormatPlan:
    source: str
    html: bool
    markdown: bool
    tokens: list[Token]
    parts: list[str | int]  # literal source bytes, or the index of a unit
    anchored: list[Unit]
    issues: list[str] = field(default_factory=list)
    rules: TagRules = DEFAULT_RULES  # how the source was lexed: the output is lexed alike

    @property
    def units(self) -> list[str]:
        """Plain texts to translate, one per block (may be empty: nothing to translate)."""
        return [u.text for u in self.anchored]

    @property
    def has_markup(self) -> bool:
        return any(t.kind != "text" for t in self.tokens)


@dataclass(frozen=True)
class FormatResult:
    text: str
    status: str  # none | ok | repaired | fallback
    detail: str | None = None


def prepare_formats(text: str, mode: str | FormatOptions = "auto") -> FormatPlan:
    """Split a row into units to translate. `mode`: auto | html | markdown | text (text:
    no processing at all, the row is one unit), or the job's FormatOptions."""
    options = mode if isinstance(mode, FormatOptions) else FormatOptions(mode)
    mode, rules = options.mode, options.rules
    if mode not in ("auto", "html", "markdown", "text"):
        raise ValueError(f"formats.mode={mode!r}: use auto, html, markdown or text")
    use_html, use_md = detect(text, mode)
    tokens = (
        [Token("text", text, 0)]
        if mode == "text"
        else lex(text, html=use_html, markdown=use_md, rules=rules)
    )
    bad = {id(t) for t in unbalanced(tokens)}
    issues = [
        f"unbalanced source markup {t.raw!r} at offset {t.start}: kept in place"
        for t in tokens
        if id(t) in bad
    ]
    escape: Escape = (
        "html+markdown"
        if use_html and use_md
        else "html"
        if use_html
        else "markdown"
        if use_md
        else ""
    )
    plan = FormatPlan(text, use_html, use_md, tokens, [], [], issues, rules)
    depth = 0
    block: list[Token] = []
    for token in tokens:
        inline = not token.block or depth > 0
        if token.kind in ("open", "close") and id(token) not in bad and inline:
            depth += 1 if token.kind == "open" else -1
        if inline or token.kind in ("text", "verbatim"):
            block.append(token)
            continue
        _flush(plan, block, bad, escape)
        block = []
        plan.parts.append(token.raw)
    _flush(plan, block, bad, escape)
    return plan


def _flush(plan: FormatPlan, tokens: list[Token], bad: set[int], escape: Escape) -> None:
    if not tokens:
        return
    # Text inside a markdown HTML block is HTML: entities, never backslash escapes.
    raw_html = any(t.raw_html for t in tokens)
    builder = _UnitBuilder(plan.source, bad, "html" if raw_html else escape)
    unit = builder.build(tokens)
    if unit is None:  # nothing to translate: the block's bytes stay as they are
        plan.parts.append("".join(t.raw for t in tokens))
        return
    plan.parts.append(len(plan.anchored))
    plan.anchored.append(unit)


class _UnitBuilder:
    """Strips inline markup out of a block's tokens, recording where each piece was."""

    def __init__(self, source: str, bad: set[int], escape: Escape) -> None:
        self.source, self.bad, self.escape = source, bad, escape
        self.buf = ""
        self.pairs: list[Pair] = []
        self.points: list[Point] = []
        self.stack: list[tuple[Token, int, int]] = []  # open token, offset, seq
        self.last: Point | None = None  # a point with only whitespace after it so far
        self.pending = ""
        self.words = False

    def build(self, tokens: list[Token]) -> Unit | None:
        for seq, token in enumerate(tokens):
            if token.kind == "text":
                raw = unescape_text(token.raw, self.escape)
                self.words = self.words or bool(_HAS_WORD.search(raw))
                self._text(raw)
            elif token.kind == "open" and id(token) not in self.bad:
                self._settle()
                self.stack.append((token, len(self.buf), seq))
            elif token.kind == "close" and id(token) not in self.bad:
                self._settle()
                self._close(token, seq)
            else:
                self._point(token.raw, seq)
        self._settle(None)
        if not self.words:
            return None
        body = self.buf.strip()
        shift = len(self.buf) - len(self.buf.lstrip())
        end = len(body)

        def clamp(at: int) -> int:
            return min(max(at - shift, 0), end)

        for pair in self.pairs:
            pair.start, pair.end = clamp(pair.start), clamp(pair.end)
        for point in self.points:
            point.at = clamp(point.at)
        return Unit(
            text=body,
            pairs=self.pairs,
            points=self.points,
            escape=self.escape,
            lead=self.buf[:shift],
            trail=self.buf[shift + end :],
            tokens=tokens,
        )

    def _parent(self) -> int | None:
        return self.stack[-1][2] if self.stack else None

    def _text(self, raw: str) -> None:
        if self.last is not None:
            body = raw.lstrip()
            self.pending += raw[: len(raw) - len(body)]
            if not body:
                return
            self._settle(body)
            raw = body
        self.buf += raw

    def _settle(self, following: str | None = "") -> None:
        """Whitespace after a point: remembered on the point, kept once in the text as the
        separator between the words around it. `following`: the text that comes next (None
        at the end of the unit, where no separator is needed)."""
        if self.last is not None:
            self.last.space_after = bool(self.pending)
            self.last.glued = not self.pending and bool(_HAS_WORD.match(following or ""))
            glued_word = self.last.space_before and bool(_HAS_WORD.match(following or ""))
            needed = following is not None and (self.last.space_after or glued_word)
            if needed and self.buf and not self.buf[-1].isspace():
                self.buf += " "
        self.last, self.pending = None, ""

    def _point(self, raw: str, seq: int) -> None:
        if self.last is not None and self.last.parent == self._parent():
            # Adjacent spans ("{x} https://... 3.5") travel as one cluster, spacing intact.
            self.last.raw += self.pending + raw
            self.pending = ""
            return
        self._settle()
        before = bool(self.buf) and self.buf[-1].isspace()
        stripped = self.buf.rstrip()
        marks = [at for _, at, _ in self.stack] + [p.end for p in self.pairs]
        if all(at <= len(stripped) for at in marks):
            # The point carries the space; the text keeps one separator, added on settle.
            self.buf = stripped
        self.last = Point(raw, len(self.buf), seq, self._parent(), space_before=before)
        self.points.append(self.last)

    def _close(self, token: Token, seq: int) -> None:
        opener, start, open_seq = self.stack.pop()
        if _HAS_WORD.search(self.buf[start:]):
            self.pairs.append(
                Pair(opener.raw, token.raw, start, len(self.buf), open_seq, self._parent())
            )
            return
        # Markup around no words (a link around an image, <b> </b>): one point, verbatim.
        raw = self.source[opener.start : token.start + len(token.raw)]
        self.points = [p for p in self.points if p.seq < open_seq]
        self.pairs = [p for p in self.pairs if p.seq < open_seq]
        self.buf = self.buf[:start]
        self.last = None
        self._point(raw, open_seq)
