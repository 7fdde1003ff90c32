"""Format anchoring, second half: the row's translation with its source markup back in place.

Anchors are projected through word alignments (one batched alignment pass for many rows),
then the row is re-lexed and checked: the same tags with the same bytes, every protected
span, well-nested. If that fails, the text runs between tags are translated one by one and
the exact source markup rebuilt around them (status "fallback"); if even that fails, the
source row is returned: broken markup is never emitted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from batchmt.workers.engines.base import Aligner, Alignment
from batchmt.workers.formats.anchors import Escape, escape_text, project, unescape_text
from batchmt.workers.formats.entities import lost_references, respell
from batchmt.workers.formats.markup import lex, markup_tokens, unbalanced
from batchmt.workers.formats.plan import (
    FALLBACK,
    NONE,
    OK,
    REPAIRED,
    FormatPlan,
    FormatResult,
    Translator,
)

_HAS_WORD = re.compile(r"\w")


def _needs(plan: FormatPlan) -> list[int]:
    return [i for i, u in enumerate(plan.anchored) if u.needs_alignment()]


def restore_many(
    plans: Sequence[FormatPlan],
    translations: Sequence[Sequence[str]],
    align: Aligner | None,
    translate: Translator | None,
) -> list[FormatResult]:
    """Restore many rows with one call to `align` (one batched forward pass)."""
    if len(plans) != len(translations):
        raise ValueError(f"{len(plans)} plans but {len(translations)} translation lists")
    wanted: list[tuple[int, int]] = []
    for row, (plan, outs) in enumerate(zip(plans, translations)):
        if len(outs) != len(plan.anchored):
            raise ValueError(
                f"row {row}: {len(outs)} translations for {len(plan.anchored)} units; pass "
                "one translation per plan.units entry"
            )
        wanted += [(row, i) for i in _needs(plan)]
    found: dict[tuple[int, int], Alignment] = {}
    if align is not None and wanted:
        sources = [plans[r].anchored[i].text for r, i in wanted]
        targets = [translations[r][i] for r, i in wanted]
        found = dict(zip(wanted, align(sources, targets)))
    return [
        _restore(plan, list(outs), [found.get((row, i)) for i in range(len(outs))], translate)
        for row, (plan, outs) in enumerate(zip(plans, translations))
    ]


def assemble(plan: FormatPlan, unit_texts: Sequence[str]) -> str:
    return "".join(p if isinstance(p, str) else unit_texts[p] for p in plan.parts)


def _restore(
    plan: FormatPlan,
    outs: list[str],
    alignments: list[Alignment | None],
    translate: Translator | None,
) -> FormatResult:
    projected = [project(u, t, a) for u, t, a in zip(plan.anchored, outs, alignments)]
    text = assemble(plan, [p.text for p in projected])
    notes = sorted({n for p in projected for n in p.notes})
    return finish(plan, text, notes, translate)


def finish(
    plan: FormatPlan, text: str, notes: list[str], translate: Translator | None
) -> FormatResult:
    """Validate a restored row; fall back to run-by-run translation when it fails.

    `ok` means every byte of the source's markup is in the output: tags, protected spans,
    and character references (`&nbsp;` written back as `&nbsp;`; one the model dropped
    makes the row `repaired`, with the reference named).
    """
    text = respell(plan, text)
    problems = validate(plan, text)
    if not problems:
        notes = [*notes, *lost_references(plan, text)]
        status = REPAIRED if notes else OK if plan.has_markup else NONE
        return FormatResult(text, status, "; ".join(plan.issues + notes) or None)
    why = "; ".join(problems)
    if translate is not None:
        fallback = respell(plan, translate_runs(plan, translate))
        if not validate(plan, fallback):
            detail = f"anchoring failed ({why}): text between tags translated separately"
            lost = lost_references(plan, fallback)
            return FormatResult(fallback, FALLBACK, "; ".join([*plan.issues, detail, *lost]))
    # Never emit broken markup: the source row is the last safe answer.
    detail = f"anchoring failed ({why}) and run-by-run translation did too: source kept"
    return FormatResult(plan.source, FALLBACK, "; ".join([*plan.issues, detail]))


def validate(plan: FormatPlan, text: str) -> list[str]:
    """What is wrong with `text` against the source markup (empty when all is well)."""
    if not plan.has_markup:
        return []
    tokens = lex(text, html=plan.html, markdown=plan.markdown, rules=plan.rules)
    source = markup_tokens(plan.tokens)
    output = markup_tokens(tokens)
    problems = []
    src_tags = Counter(t.raw for t in source if t.kind != "verbatim")
    out_tags = Counter(t.raw for t in output if t.kind != "verbatim")
    if src_tags != out_tags:
        lost, extra = src_tags - out_tags, out_tags - src_tags
        problems.append(f"markup differs (missing {sorted(lost)}, extra {sorted(extra)})")
    # Spans may also appear in the translated text itself; only losing one is an error.
    src_spans = Counter(t.raw for t in source if t.kind == "verbatim")
    out_spans = Counter(t.raw for t in output if t.kind == "verbatim")
    lost_spans = src_spans - out_spans
    if lost_spans:
        problems.append(f"protected spans lost {sorted(lost_spans)}")
    open_after = Counter(t.raw for t in unbalanced(tokens))
    if open_after != Counter(t.raw for t in unbalanced(plan.tokens)):
        problems.append("tags not well-nested")
    return problems


def translate_runs(plan: FormatPlan, translate: Translator) -> str:
    """The source markup byte for byte, with each text run between tags translated alone."""
    runs: list[tuple[str, str, str]] = []  # lead, body, trail per translatable run
    escapes: list[Escape] = []  # per run: its unit's (HTML inside a markdown HTML block)
    layout: list[str | int] = []
    for part in plan.parts:
        if isinstance(part, str):
            layout.append(part)
            continue
        unit = plan.anchored[part]
        for token in unit.tokens:
            if token.kind != "text" or not _HAS_WORD.search(token.raw):
                layout.append(token.raw)
                continue
            raw = unescape_text(token.raw, unit.escape)
            body = raw.strip()
            lead = raw[: len(raw) - len(raw.lstrip())]
            runs.append((lead, body, raw[len(lead) + len(body) :]))
            escapes.append(unit.escape)
            layout.append(len(runs) - 1)
    outputs = translate([body for _, body, _ in runs]) if runs else []
    pieces: list[str] = []
    for p in layout:
        if isinstance(p, str):
            pieces.append(p)
            continue
        lead, body, trail = runs[p]
        out = escape_text(outputs[p], escapes[p])
        # "4' in" may come back as "im": never glue a word onto a span it did not touch.
        if not lead and out[:1].isalnum() and not body[:1].isalnum():
            lead = " "
        if not trail and out[-1:].isalnum() and not body[-1:].isalnum():
            trail = " "
        pieces.append(lead + out + trail)
    return "".join(pieces)
