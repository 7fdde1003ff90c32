"""HY-MT's formatted prompt: inline markup as `<sn></sn>` and back.

HY-MT1.5 is trained to keep `<sn>…</sn>` around the words that carried formatting
(HY-MT-PROMPTS.md). `sn_sources` writes each unit of a `FormatPlan` that way: a tag pair
becomes `<sn>words</sn>`, a protected span `<sn>{name}</sn>` (the model copies it), other
point markup (void tags, comments) an empty `<sn></sn>`. `restore_from_sn` reads the
model's `<sn>` spans back in order, puts the original bytes in their place and runs the
same validation and fallback as the alignment path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from batchmt.workers.formats.anchors import Pair, Point, Unit, render
from batchmt.workers.formats.plan import FormatPlan, FormatResult, Translator
from batchmt.workers.formats.restore import assemble, finish

_SN = re.compile(r"</?sn>")
_TARGET = re.compile(r"<target>(.*?)(?:</target>|\Z)", re.S)
_MARKUP = re.compile(r"^<|^\[|^`|^\*|^_|^~")


def _anchors(unit: Unit) -> list[Pair | Point]:
    return sorted([*unit.pairs, *unit.points], key=lambda a: a.seq)


def sn_source(unit: Unit) -> str:
    """The unit text with its anchors as `<sn>` spans, in source order."""
    inserts: list[tuple[int, int, str]] = []  # offset, order, string
    for k, anchor in enumerate(_anchors(unit)):
        if isinstance(anchor, Pair):
            inserts += [(anchor.start, 2 * k + 1, "<sn>"), (anchor.end, -2 * k, "</sn>")]
        else:
            body = "" if _MARKUP.match(anchor.raw) else anchor.raw
            pad = " " if anchor.space_before and anchor.at > 0 else ""
            inserts.append((anchor.at, 2 * k, f"{pad}<sn>{body}</sn>"))
    out, cursor = [], 0
    for at, _, piece in sorted(inserts):
        out += [unit.text[cursor:at], piece]
        cursor = at
    return "".join(out) + unit.text[cursor:]


def sn_sources(plan: FormatPlan) -> list[str]:
    """One `{src_text_with_format}` per unit, in `plan.units` order."""
    return [sn_source(u) for u in plan.anchored]


def _read(unit: Unit, output: str) -> tuple[str, dict[int, tuple[int, int]]] | None:
    """Plain text of the output and each anchor's span in it; None when the `<sn>` spans do
    not match the source's (count or nesting)."""
    anchors = _anchors(unit)
    text = ""
    spans: list[list[int]] = []
    stack: list[int] = []
    cursor = 0
    for tag in _SN.finditer(output):
        text += output[cursor : tag.start()]
        cursor = tag.end()
        if tag.group(0) == "<sn>":
            stack.append(len(spans))
            spans.append([len(text), -1])
        elif stack:
            spans[stack.pop()][1] = len(text)
        else:
            return None
    text += output[cursor:]
    if stack or len(spans) != len(anchors):
        return None
    return text, {a.seq: (s, e) for a, (s, e) in zip(anchors, spans)}


def restore_from_sn(
    plan: FormatPlan, outputs: Sequence[str], translate: Translator | None
) -> FormatResult:
    """The row from the model's per-unit outputs (with or without `<target>` wrappers)."""
    if len(outputs) != len(plan.anchored):
        raise ValueError(f"{len(outputs)} outputs for {len(plan.anchored)} units")
    texts, notes = [], []
    for unit, raw in zip(plan.anchored, outputs):
        wrapped = _TARGET.search(raw)
        read = _read(unit, (wrapped.group(1) if wrapped else raw).strip())
        if read is None:
            notes.append("model output's <sn> tags do not match the source")
            texts.append("")
            continue
        text, spans = read
        points = {p.seq for p in unit.points}
        offsets = {seq: spans[seq][0] for seq in points}
        # A point's <sn> content is the model's copy of the span: the source bytes replace it.
        for seq in sorted(points, key=lambda s: -spans[s][0]):
            start, end = spans[seq]
            text = text[:start] + text[end:]
            width = end - start
            spans = {k: _shift(v, start, width) for k, v in spans.items()}
            offsets = {k: _shift((v, v), start, width)[0] for k, v in offsets.items()}
        pairs = {p.seq: spans[p.seq] for p in unit.pairs}
        rendered, fixes = render(unit, text, pairs, offsets)
        texts.append(rendered)
        notes += fixes
    if any("do not match" in n for n in notes):
        return finish(plan, "", ["<sn> mismatch"], translate)
    return finish(plan, assemble(plan, texts), sorted(set(notes)), translate)


def _shift(span: tuple[int, int], start: int, width: int) -> tuple[int, int]:
    def move(at: int) -> int:
        return at - width if at >= start + width else min(at, start)

    return move(span[0]), move(span[1])
