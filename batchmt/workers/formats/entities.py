"""Character references of an HTML row, written back as the source spelled them.

The model reads `10&nbsp;km` as "10 km" with a no-break space, and `&rsquo;` as "’": text is
unescaped before translation (`anchors.unescape_text`), and escaping the translation only
re-encodes `&`, `<` and `>`. Without this step the output held a raw U+00A0 where the source
had `&nbsp;`, and a row whose markup was otherwise intact said `ok` (issue #23, finding 10).

Here every character the source wrote as a reference (and never as itself) is written back
with the source's own spelling, in the output's text runs only (attribute values are part
of their tag's bytes already). A reference the translation no longer holds at all (the
model dropped the `&` of `Tom &amp; Jerry`) is reported: the row is then not `ok`.
"""

from __future__ import annotations

import html
import re
from collections import Counter

from batchmt.workers.formats.markup import Token, lex
from batchmt.workers.formats.plan import FormatPlan

_REFERENCE = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#\d+|#[xX][\da-fA-F]+);")
# The escaper writes these itself (`&amp;`, `&lt;`, `&gt;`): another spelling of them in the
# source (`&#38;`) cannot be restored by substitution, only reported when it is missing.
_ESCAPED = frozenset("&<>")


def _text_runs(tokens: list[Token]) -> list[Token]:
    return [t for t in tokens if t.kind == "text"]


def source_references(plan: FormatPlan) -> Counter[str]:
    """The character references in the source's text runs, as spelled there."""
    if not plan.html:
        return Counter()
    return Counter(m.group(0) for t in _text_runs(plan.tokens) for m in _REFERENCE.finditer(t.raw))


def _spellings(plan: FormatPlan) -> dict[str, str]:
    """{character: the reference the source wrote it as}, for characters the source only
    ever wrote as a reference (one spelling each: `&nbsp;` and `&#160;` together are
    ambiguous, and left as the escaper writes them)."""
    found: dict[str, set[str]] = {}
    plain: set[str] = set()
    for token in _text_runs(plan.tokens):
        for m in _REFERENCE.finditer(token.raw):
            char = html.unescape(m.group(0))
            if char != m.group(0):
                found.setdefault(char, set()).add(m.group(0))
        plain.update(_REFERENCE.sub("", token.raw))
    return {
        char: next(iter(refs))
        for char, refs in found.items()
        if len(refs) == 1 and char not in plain and char not in _ESCAPED
    }


def respell(plan: FormatPlan, text: str) -> str:
    """`text` (a restored row) with the source's references spelled as in the source."""
    spellings = _spellings(plan)
    if not spellings:
        return text
    pattern = re.compile("|".join(re.escape(c) for c in sorted(spellings, key=len, reverse=True)))
    tokens = lex(text, html=plan.html, markdown=plan.markdown, rules=plan.rules)
    return "".join(
        pattern.sub(lambda m: spellings[m.group(0)], t.raw) if t.kind == "text" else t.raw
        for t in tokens
    )


def lost_references(plan: FormatPlan, text: str) -> list[str]:
    """Notes for the source's references that `text` holds fewer times than the source."""
    wanted = source_references(plan)
    if not wanted:
        return []
    tokens = lex(text, html=plan.html, markdown=plan.markdown, rules=plan.rules)
    have = Counter(m.group(0) for t in _text_runs(tokens) for m in _REFERENCE.finditer(t.raw))
    lost = wanted - have
    return [
        f"character reference {ref} of the source not in the translation ({n} of "
        f"{wanted[ref]} missing)"
        for ref, n in sorted(lost.items())
    ]
