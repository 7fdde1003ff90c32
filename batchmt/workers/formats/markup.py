"""Lexing a row into text and markup: HTML/XML tags, markdown, and verbatim spans.

The lexer never fails: anything it does not recognise is text, so a row with broken markup
still translates. Every token keeps its exact source bytes (`raw`), which is what lets the
restore step guarantee tags, attributes and protected spans come back byte-identical.

Markdown's block structure (code blocks, HTML blocks, tables, reference definitions, front
matter) comes from a CommonMark parser (`blocks.py`); lines between those blocks and the
text inside them are lexed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

from batchmt.workers.formats.blocks import Region, TableRow, cells, regions

Kind = Literal["text", "open", "close", "void", "verbatim"]


@dataclass(frozen=True)
class Token:
    kind: Kind
    raw: str
    start: int  # offset of `raw` in the row
    name: str = ""  # pairing key for open/close: "b", "md:**", "md:link"
    block: bool = False  # splits the row into independently translated units
    label: str = ""  # what a verbatim span is: url, placeholder, number, code, comment...
    # Inside a markdown HTML block: the text is HTML (entities, no markdown escapes).
    raw_html: bool = False


@dataclass(frozen=True)
class TagRules:
    """A job's own tag lists (`formats.ignore_tags`, `formats.non_splitting_tags`), on top
    of the built-in ones: CMS exports name their own no-translate and inline elements."""

    ignore: frozenset[str] = frozenset()  # content kept verbatim, like <code> or translate=no
    non_splitting: frozenset[str] = frozenset()  # inline even if BLOCK lists them

    def splits(self, name: str) -> bool:
        return name in BLOCK and name not in self.non_splitting


DEFAULT_RULES = TagRules()


VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
BLOCK = frozenset(
    (
        "address article aside blockquote body br caption dd details dialog div dl dt "
        "fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 head header hr html li "
        "main nav ol option p pre section summary table tbody td tfoot th thead title tr ul"
    ).split()
)
# Elements whose content is code or data, never prose: kept whole, byte for byte.
RAW_CONTENT = frozenset("script style pre code kbd samp var textarea math svg".split())

_ATTR = r"""(?:\s+[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?)"""
# Quoted attribute values may hold '>' (e.g. title="a > b"): the quotes are matched first.
_TAG = re.compile(rf"<(?P<close>/)?(?P<name>[A-Za-z][\w:.-]*)(?P<attrs>{_ATTR}*)\s*(?P<self>/)?>")
_NO_TRANSLATE = re.compile(
    r"""\btranslate\s*=\s*["']?no\b|\bclass\s*=\s*["'][^"']*\bnotranslate\b""", re.IGNORECASE
)

# Verbatim spans, most specific first: a URL beats the number inside it.
_VERBATIM = [
    ("comment", r"<!--.*?(?:-->|\Z)"),
    ("markup", r"<!\[CDATA\[.*?(?:\]\]>|\Z)|<![A-Za-z][^>]*>|<\?.*?\?>"),
    # A tag cut off before its ">" (`... runs <p` at the row's end, or before the next tag):
    # kept byte for byte like any markup, not handed to the model as text (issue #23).
    ("markup", r"<[A-Za-z][\w:.-]*[^<>]*(?=<|\Z)"),
    ("url", r"<(?:https?|ftp)://[^\s<>]+>|\b(?:https?|ftp)://[^\s<>\"']*[^\s<>\"'.,;:!?)\]]"),
    ("url", r"\bwww\.[\w-]+(?:\.[\w-]+)+(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)\]])?"),
    ("email", r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b"),
    ("placeholder", r"\{\{\s*[\w.\-]+\s*\}\}|\$\{[\w.\-]+\}|\{[\w.\-]*\}|\[\[[\w.\-]+\]\]"),
    ("placeholder", r"%(?:\(\w+\))?[-+#0]*\d*(?:\.\d+)?[sdifgexXocr]|%%"),
    ("number", r"(?<![\w.,-])[+-]?\d+(?:[.,:/]\d+)*%?(?![\w-])"),
]
_MD_CODE = r"(?P<ticks>`+)[^`].*?(?P=ticks)|``"
_MD_IMAGE = r"!\[[^\]]*\](?:\([^()\s]*(?:\s+\"[^\"]*\")?\)|\[[^\[\]\n]*\])"
# `](url)`, or `][label]` of a full reference link: the label must stay as it is.
_MD_LINK_CLOSE = r"\]\([^()\s]*(?:\s+\"[^\"]*\")?\)|\](?:\[[^\[\]\n]+\])"
# A collapsed reference link `[label][]`: its text is the label, so all of it is verbatim.
_MD_COLLAPSED = r"\[[^\[\]\n]+\]\[\]"
_QUOTE_MARKERS = re.compile(r"(?:[ \t]*>[ \t]?)*")
_DEFINITION_LABEL = re.compile(r"[ \t>]*\[((?:[^\[\]\\]|\\.)+)\]:")
# A block-level prefix at a line start: list item, heading, block quote.
MD_LINE_PREFIX = re.compile(r"[ \t]*(?:[-*+][ \t]+|\d{1,9}[.)][ \t]+|#{1,6}[ \t]+|>[ \t]?)")
_MD_EMPHASIS = [
    ("**", re.compile(r"(?<![*\\])\*\*(?=[^\s*])(?:[^*]|\*(?!\*))+?(?<=[^\s\\])\*\*")),
    ("__", re.compile(r"(?<![\w_\\])__(?=\S)(?:[^_]|_(?!_))+?(?<=[^\s\\])__(?![\w_])")),
    ("~~", re.compile(r"(?<!\\)~~(?=\S)[^~]+?(?<=[^\s\\])~~")),
    ("*", re.compile(r"(?<![*\\\w])\*(?=[^\s*])[^*]+?(?<=[^\s\\*])\*(?![*\w])")),
    ("_", re.compile(r"(?<![\w_\\])_(?=[^\s_])[^_]+?(?<=[^\s\\_])_(?![\w_])")),
]

_HTML_HINT = re.compile(r"</?[A-Za-z][\w:.-]*(?:\s[^<>]*)?/?>|<!--|&(?:[A-Za-z]+|#\d+|#x[\da-f]+);")
_MD_HINT = re.compile(
    r"^[ \t]*(?:[-*+]|\d{1,9}[.)]|#{1,6})[ \t]+\S|\*\*\S|__\S|`[^`\n]+`|\[[^\]\n]+\]\([^)\n]*\)"
    r"|^[ \t]*(?:```|~~~)"
    # a GFM table's delimiter row, a reference link or a link reference definition
    r"|^[ \t>]*\|?(?:[ \t]*:?-+:?[ \t]*\|)+(?:[ \t]*:?-+:?[ \t]*)?$"
    r"|\[[^\]\n]+\]\[[^\]\n]*\]|^[ \t]{0,3}\[[^\]\n]+\]:[ \t]*\S"
    # an indented code block after a blank line; only a line that looks like code, since
    # plain text indents quotations and signatures too
    r"|^[ \t]*\n(?: {4}|\t)(?=[^\n]*[(){}\[\]=;<>$\\])",
    re.M,
)


def detect(text: str, mode: str) -> tuple[bool, bool]:
    """(html, markdown) for a row; `auto` looks for the syntax itself."""
    if mode == "html":
        return True, False
    if mode == "markdown":
        return False, True
    if mode == "text":
        return False, False
    return bool(_HTML_HINT.search(text)), bool(_MD_HINT.search(text))


def lex(
    text: str,
    *,
    html: bool,
    markdown: bool,
    verbatim: bool = True,
    rules: TagRules = DEFAULT_RULES,
) -> list[Token]:
    """Tokens covering `text` exactly: "".join(t.raw for t in tokens) == text."""
    ctx = _Context(html, verbatim, rules)
    if not markdown:
        return _lex_inline(text, 0, ctx, markdown=False)
    found = regions(text)
    for region in found:
        if region.kind == "definition":
            label = _DEFINITION_LABEL.match(text, region.start, region.end)
            if label:
                ctx.labels.add(_label_key(label.group(1)))
    tokens: list[Token] = []
    pos = 0
    for region in found:
        if region.start > pos:
            tokens += _lex_md_lines(text[pos : region.start], pos, ctx)
        tokens += _lex_region(text, region, ctx)
        pos = region.end
    if pos < len(text):
        tokens += _lex_md_lines(text[pos:], pos, ctx)
    return tokens


@dataclass
class _Context:
    html: bool
    verbatim: bool
    rules: TagRules
    labels: set[str] = field(default_factory=set)  # reference labels the row defines


def _label_key(label: str) -> str:
    """CommonMark's label matching: case-folded, inner whitespace collapsed."""
    return " ".join(label.split()).casefold()


def _lex_region(text: str, region: Region, ctx: _Context) -> list[Token]:
    if region.kind == "html":
        return _lex_html(text, region, ctx)
    if region.kind != "table":  # code, definition, front matter: verbatim, one block
        raw = text[region.start : region.end]
        return [Token("void", raw, region.start, block=True, label=region.kind)]
    tokens: list[Token] = []
    pos = region.start
    for row in region.rows:
        if row.start > pos:  # the line break(s) between rows
            tokens.append(Token("void", text[pos : row.start], pos, block=True))
        tokens += _lex_table_row(text, row, region.nested, ctx)
        pos = row.end
    if region.end > pos:
        tokens.append(Token("void", text[pos : region.end], pos, block=True))
    return tokens


def _lex_table_row(text: str, row: TableRow, nested: bool, ctx: _Context) -> list[Token]:
    """Pipes, the spaces around them and the alignment row byte for byte; each cell is a
    unit of its own."""
    if row.delimiter:
        return [Token("void", text[row.start : row.end], row.start, block=True, label="table")]
    tokens: list[Token] = []
    pos = row.start
    for cell in cells(text, row, nested):
        if cell.start > pos:
            tokens.append(Token("void", text[pos : cell.start], pos, block=True, label="table"))
        tokens += _lex_inline(text[cell.start : cell.end], cell.start, ctx, markdown=True)
        pos = cell.end
    if row.end > pos:
        tokens.append(Token("void", text[pos : row.end], pos, block=True, label="table"))
    return tokens


def _lex_html(text: str, region: Region, ctx: _Context) -> list[Token]:
    """An HTML block's content is HTML: tags kept, the text between them translated. Inside
    a block quote, each line's `>` markers are markup of their own."""
    if not region.nested:
        raw = text[region.start : region.end]
        inner = _lex_inline(raw, region.start, ctx, markdown=False, html=True)
        return [t for token in inner for t in _split_lines(token)]
    tokens: list[Token] = []
    for line in re.finditer(r"[^\n]*(?:\n|$)", text[region.start : region.end]):
        if not line.group(0):
            continue
        start = region.start + line.start()
        marker = _QUOTE_MARKERS.match(line.group(0))
        if marker and marker.end():
            tokens.append(Token("void", marker.group(0), start, block=True, raw_html=True))
        rest = line.group(0)[marker.end() if marker else 0 :]
        at = start + len(line.group(0)) - len(rest)
        if rest:
            inner = _lex_inline(rest, at, ctx, markdown=False, html=True)
            tokens += [t for token in inner for t in _split_lines(token)]
    return tokens


def _split_lines(token: Token) -> list[Token]:
    """A text token of an HTML block, cut at its line breaks (each line a unit, as in the
    rest of the row); every token is marked as HTML-block content."""
    if token.kind != "text":
        return [replace(token, raw_html=True)]
    out: list[Token] = []
    for part in re.finditer(r"[^\n]+|\n+", token.raw):
        kind: Kind = "void" if part.group(0).startswith("\n") else "text"
        # A line with an unfinished tag (`<div id="foo"` to the line end) stays as it is.
        label = "markup" if kind == "text" and "<" in part.group(0) else ""
        start = token.start + part.start()
        kind = "verbatim" if label else kind
        out.append(
            Token(kind, part.group(0), start, block=kind == "void", label=label, raw_html=True)
        )
    return out


def _lex_md_lines(text: str, offset: int, ctx: _Context) -> list[Token]:
    tokens: list[Token] = []
    for line in re.finditer(r"[^\n]*(\n+|\Z)", text):
        if not line.group(0):
            continue
        body_start = line.start()
        prefix = MD_LINE_PREFIX.match(text, line.start())
        if prefix and prefix.end() <= line.start(1):
            tokens.append(Token("void", prefix.group(0), offset + prefix.start(), block=True))
            body_start = prefix.end()
        body = text[body_start : line.start(1)]
        if body:
            tokens += _lex_inline(body, offset + body_start, ctx, markdown=True)
        if line.group(1):
            tokens.append(Token("void", line.group(1), offset + line.start(1), block=True))
    return tokens


def _pattern(html: bool, markdown: bool, verbatim: bool) -> re.Pattern[str]:
    parts: list[str] = []
    for label, regex in _VERBATIM:
        if label in ("comment", "markup") and not html:
            continue
        if label not in ("comment", "markup") and not verbatim:
            continue
        parts.append(f"(?P<v_{len(parts)}_{label}>{regex})")
    if markdown:
        parts += [
            f"(?P<md_code>{_MD_CODE})",
            f"(?P<md_image>{_MD_IMAGE})",
            f"(?P<md_collapsed>{_MD_COLLAPSED})",
            f"(?P<md_link_close>{_MD_LINK_CLOSE})",
            r"(?P<md_link_open>\[)",
        ]
    if html:
        parts.append(f"(?P<tag>{_TAG.pattern})")
    return re.compile("|".join(parts) or r"(?!x)x", re.S)


_PATTERNS: dict[tuple[bool, bool, bool], re.Pattern[str]] = {}


def _lex_inline(
    text: str, offset: int, ctx: _Context, *, markdown: bool, html: bool | None = None
) -> list[Token]:
    html = ctx.html if html is None else html
    key = (html, markdown, ctx.verbatim)
    pattern = _PATTERNS.get(key) or _PATTERNS.setdefault(key, _pattern(*key))
    # Markdown emphasis is found on a masked copy, so delimiters inside code, URLs or tags
    # are never taken for emphasis.
    marks: dict[int, Token] = {}
    tokens: list[Token] = []
    spans: list[tuple[int, int, Token | None]] = []
    pos = 0
    while pos < len(text):
        match = pattern.search(text, pos)
        if match is None:
            break
        token, end = _classify(match, text, offset, ctx)
        if token is None:
            pos = match.start() + 1
            continue
        spans.append((match.start(), end, token))
        pos = end
    if markdown:
        masked = list(text)
        for start, end, _ in spans:
            masked[start:end] = "\0" * (end - start)
        marks = _emphasis("".join(masked), offset)
    events = sorted(
        [(s, e, t) for s, e, t in spans]
        + [(m.start - offset, m.start - offset + len(m.raw), m) for m in marks.values()],
        key=lambda item: item[0],
    )
    pos = 0
    for start, end, token in events:
        if start < pos or token is None:
            continue
        if start > pos:
            tokens.append(Token("text", text[pos:start], offset + pos))
        tokens.append(token)
        pos = end
    if pos < len(text):
        tokens.append(Token("text", text[pos:], offset + pos))
    return tokens


def _classify(
    match: re.Match[str], text: str, offset: int, ctx: _Context
) -> tuple[Token | None, int]:
    group = match.lastgroup or ""
    raw, start = match.group(0), offset + match.start()
    if group.startswith("v_"):
        return Token("verbatim", raw, start, label=group.split("_", 2)[2]), match.end()
    if group == "md_code":
        return Token("verbatim", raw, start, label="code"), match.end()
    if group == "md_image":
        return Token("verbatim", raw, start, label="image"), match.end()
    if group == "md_collapsed":
        return Token("verbatim", raw, start, label="link"), match.end()
    if group == "md_link_close":
        return Token("close", raw, start, name="md:link"), match.end()
    if group == "md_link_open":
        # Only a "[" that a "](url)" closes is a link; a lone bracket is text.
        if re.match(rf"\[(?:[^\[\]]|\[[^\]]*\])*(?:{_MD_LINK_CLOSE})", text[match.start() :]):
            return Token("open", raw, start, name="md:link"), match.end()
        # A shortcut reference `[label]` to a definition in the row: text and label are one.
        shortcut = re.match(r"\[([^\[\]\n]+)\](?![\[(:])", text[match.start() :])
        if shortcut and _label_key(shortcut.group(1)) in ctx.labels:
            end = match.start() + shortcut.end()
            return Token("verbatim", shortcut.group(0), start, label="link"), end
        return None, match.end()
    name = match.group("name").lower()
    block = ctx.rules.splits(name)
    if match.group("close"):
        return Token("close", raw, start, name=name, block=block), match.end()
    if match.group("self") or name in VOID:
        return Token("void", raw, start, name=name, block=block), match.end()
    ignored = name in ctx.rules.ignore or _NO_TRANSLATE.search(match.group("attrs") or "")
    if name in RAW_CONTENT or ignored:
        close = _element_end(text, match.end(), name)
        if close is not None:
            label = "notranslate" if name not in RAW_CONTENT else "code"
            return Token("verbatim", text[match.start() : close], start, label=label), close
    return Token("open", raw, start, name=name, block=block), match.end()


def _element_end(text: str, pos: int, name: str) -> int | None:
    """End of the element opened just before `pos` (same-name nesting counted)."""
    depth = 1
    for tag in _TAG.finditer(text, pos):
        if tag.group("name").lower() != name or tag.group("self"):
            continue
        depth += -1 if tag.group("close") else 1
        if depth == 0:
            return tag.end()
    return None


def _emphasis(masked: str, offset: int) -> dict[int, Token]:
    marks: dict[int, Token] = {}
    text = masked
    for delim, regex in _MD_EMPHASIS:
        for m in regex.finditer(text):
            close_at = m.end() - len(delim)
            marks[m.start()] = Token("open", delim, offset + m.start(), name=f"md:{delim}")
            marks[close_at] = Token("close", delim, offset + close_at, name=f"md:{delim}")
        # Mask what was taken so "**" is not read again as two "*".
        for pos in list(marks):
            length = len(marks[pos].raw)
            text = text[:pos] + "\0" * length + text[pos + length :]
    return {offset + pos: tok for pos, tok in marks.items()}


def markup_tokens(tokens: list[Token]) -> list[Token]:
    return [t for t in tokens if t.kind != "text"]


def unbalanced(tokens: list[Token]) -> list[Token]:
    """Open/close tokens that do not pair up in a well-nested way (empty when well-formed)."""
    stack: list[Token] = []
    bad: list[Token] = []
    for token in tokens:
        if token.kind == "open":
            stack.append(token)
        elif token.kind == "close":
            if stack and stack[-1].name == token.name:
                stack.pop()
            elif any(t.name == token.name for t in stack):
                # Closing an outer element: everything opened inside it was left open.
                while stack[-1].name != token.name:
                    bad.append(stack.pop())
                stack.pop()
            else:
                bad.append(token)
    return bad + stack
