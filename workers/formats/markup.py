"""Lexing a row into text and markup: HTML/XML tags, markdown, and verbatim spans.

The lexer never fails: anything it does not recognise is text, so a row with broken markup
still translates. Every token keeps its exact source bytes (`raw`), which is what lets the
restore step guarantee tags, attributes and protected spans come back byte-identical.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["text", "open", "close", "void", "verbatim"]


@dataclass(frozen=True)
class Token:
    kind: Kind
    raw: str
    start: int  # offset of `raw` in the row
    name: str = ""  # pairing key for open/close: "b", "md:**", "md:link"
    block: bool = False  # splits the row into independently translated units
    label: str = ""  # what a verbatim span is: url, placeholder, number, code, comment...


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
    ("url", r"<(?:https?|ftp)://[^\s<>]+>|\b(?:https?|ftp)://[^\s<>\"']*[^\s<>\"'.,;:!?)\]]"),
    ("url", r"\bwww\.[\w-]+(?:\.[\w-]+)+(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)\]])?"),
    ("email", r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b"),
    ("placeholder", r"\{\{\s*[\w.\-]+\s*\}\}|\$\{[\w.\-]+\}|\{[\w.\-]*\}|\[\[[\w.\-]+\]\]"),
    ("placeholder", r"%(?:\(\w+\))?[-+#0]*\d*(?:\.\d+)?[sdifgexXocr]|%%"),
    ("number", r"(?<![\w.,-])[+-]?\d+(?:[.,:/]\d+)*%?(?![\w-])"),
]
_MD_CODE = r"(?P<ticks>`+)[^`].*?(?P=ticks)|``"
_MD_IMAGE = r"!\[[^\]]*\]\([^()\s]*(?:\s+\"[^\"]*\")?\)"
_MD_LINK_CLOSE = r"\]\([^()\s]*(?:\s+\"[^\"]*\")?\)"
# A block-level prefix at a line start: list item, heading, block quote.
MD_LINE_PREFIX = re.compile(r"[ \t]*(?:[-*+][ \t]+|\d{1,9}[.)][ \t]+|#{1,6}[ \t]+|>[ \t]?)")
_MD_FENCE = re.compile(r"^([ \t]*(`{3,}|~{3,})).*?(?:^[ \t]*\2[ \t]*$|\Z)", re.M | re.S)
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
    r"|^[ \t]*(?:```|~~~)",
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


def lex(text: str, *, html: bool, markdown: bool, verbatim: bool = True) -> list[Token]:
    """Tokens covering `text` exactly: "".join(t.raw for t in tokens) == text."""
    if not markdown:
        return _lex_inline(text, 0, html=html, markdown=False, verbatim=verbatim)
    tokens: list[Token] = []
    pos = 0
    for fence in _MD_FENCE.finditer(text):
        if fence.start() > pos:
            tokens += _lex_md_lines(text[pos : fence.start()], pos, html, verbatim)
        tokens.append(Token("void", fence.group(0), fence.start(), block=True, label="code"))
        pos = fence.end()
    if pos < len(text):
        tokens += _lex_md_lines(text[pos:], pos, html, verbatim)
    return tokens


def _lex_md_lines(text: str, offset: int, html: bool, verbatim: bool) -> list[Token]:
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
            tokens += _lex_inline(
                body, offset + body_start, html=html, markdown=True, verbatim=verbatim
            )
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
            f"(?P<md_link_close>{_MD_LINK_CLOSE})",
            r"(?P<md_link_open>\[)",
        ]
    if html:
        parts.append(f"(?P<tag>{_TAG.pattern})")
    return re.compile("|".join(parts) or r"(?!x)x", re.S)


_PATTERNS: dict[tuple[bool, bool, bool], re.Pattern[str]] = {}


def _lex_inline(
    text: str, offset: int, *, html: bool, markdown: bool, verbatim: bool
) -> list[Token]:
    key = (html, markdown, verbatim)
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
        token, end = _classify(match, text, offset)
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


def _classify(match: re.Match[str], text: str, offset: int) -> tuple[Token | None, int]:
    group = match.lastgroup or ""
    raw, start = match.group(0), offset + match.start()
    if group.startswith("v_"):
        return Token("verbatim", raw, start, label=group.split("_", 2)[2]), match.end()
    if group == "md_code":
        return Token("verbatim", raw, start, label="code"), match.end()
    if group == "md_image":
        return Token("verbatim", raw, start, label="image"), match.end()
    if group == "md_link_close":
        return Token("close", raw, start, name="md:link"), match.end()
    if group == "md_link_open":
        # Only a "[" that a "](url)" closes is a link; a lone bracket is text.
        if re.match(rf"\[(?:[^\[\]]|\[[^\]]*\])*{_MD_LINK_CLOSE}", text[match.start() :]):
            return Token("open", raw, start, name="md:link"), match.end()
        return None, match.end()
    name = match.group("name").lower()
    if match.group("close"):
        return Token("close", raw, start, name=name, block=name in BLOCK), match.end()
    if match.group("self") or name in VOID:
        return Token("void", raw, start, name=name, block=name in BLOCK), match.end()
    if name in RAW_CONTENT or _NO_TRANSLATE.search(match.group("attrs") or ""):
        end = _element_end(text, match.end(), name)
        if end is not None:
            label = "notranslate" if name not in RAW_CONTENT else "code"
            return Token("verbatim", text[match.start() : end], start, label=label), end
    return Token("open", raw, start, name=name, block=name in BLOCK), match.end()


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
