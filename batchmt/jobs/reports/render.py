"""One self-contained HTML page from a job's output (`batchmt report`): rendering only.

No script, no network: charts are inline SVG, styles inline, and a Content-Security-Policy
forbids scripts and remote loads even if a corpus string slipped through unescaped. Every
string from the corpus or the output (sources, translations, ids, flags, shard ids, model
names) goes through `_e` (html.escape with quotes); a row holding `<script>` shows as text.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f4f4f4}td.num{text-align:right}
.rows td{max-width:330px;word-wrap:break-word;white-space:pre-wrap}
.flag{display:inline-block;background:#fde2e1;color:#8a1f11;border-radius:3px;
padding:0 4px;margin:1px;font-size:12px}.muted{color:#777}svg text{font-size:11px}
"""


@dataclass(frozen=True)
class ShardLine:
    """One shard's numbers for the charts."""

    shard_id: str
    rows: int
    seconds: float
    checked: int  # rows QE checked
    flagged: int  # rows with at least one flag


@dataclass(frozen=True)
class WorstRow:
    id: str
    source: str
    translation: str
    reference: str | None
    flags: Sequence[str]
    score: float | None
    status: str


@dataclass
class ReportData:
    title: str
    summary: Mapping[str, Any]  # label -> value, shown as a table
    status_counts: Mapping[str, int]
    flag_counts: Mapping[str, int]
    shards: list[ShardLine] = field(default_factory=list)
    glossary: Mapping[str, Any] | None = None  # terms, honoured, adherence; None = no glossary
    format_counts: Mapping[str, int] = field(default_factory=dict)
    worst: list[WorstRow] = field(default_factory=list)
    # Further sections (id, title, html), after the others: reports/details.py.
    extra: list[tuple[str, str, str]] = field(default_factory=list)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(rows: Sequence[tuple[Any, Any]], head: tuple[str, str] | None = None) -> str:
    parts = ["<table>"]
    if head:
        parts.append(f"<tr><th>{_e(head[0])}</th><th>{_e(head[1])}</th></tr>")
    for key, value in rows:
        shown = f"{value:,.3f}" if isinstance(value, float) else value
        shown = f"{shown:,}" if isinstance(shown, int) and not isinstance(shown, bool) else shown
        parts.append(f'<tr><th>{_e(key)}</th><td class="num">{_e(shown)}</td></tr>')
    parts.append("</table>")
    return "".join(parts)


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], unit: str) -> str:
    """Horizontal bars as inline SVG, one per label; a <title> per bar for the exact value."""
    if not values:
        return f'<p class="muted">{_e(title)}: no shards</p>'
    top = max(max(values), 1e-9)
    width, bar, gap, left = 640, 16, 4, 150
    height = len(values) * (bar + gap) + 24
    parts = [
        f'<svg role="img" aria-label="{_e(title)}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><text x="0" y="12" font-weight="bold">'
        f"{_e(title)}</text>"
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 20 + i * (bar + gap)
        w = max(1.0, (width - left - 80) * value / top)
        parts.append(
            f'<text x="0" y="{y + 12}">{_e(label[:22])}</text>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar}" fill="#4a7fb5">'
            f"<title>{_e(label)}: {value:.3g} {_e(unit)}</title></rect>"
            f'<text x="{left + w + 4:.1f}" y="{y + 12}">{value:.3g} {_e(unit)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _flags(flags: Sequence[str]) -> str:
    return "".join(f'<span class="flag">{_e(f)}</span>' for f in flags) or (
        '<span class="muted">none</span>'
    )


def _worst(rows: Sequence[WorstRow]) -> str:
    if not rows:
        return '<p class="muted">no checked rows in the samples</p>'
    head = "".join(
        f"<th>{h}</th>"
        for h in ("id", "source", "translation", "reference", "flags", "qe_score", "status")
    )
    body = []
    for r in rows:
        score = "" if r.score is None else f"{r.score:.3f}"
        reference = (
            _e(r.reference) if r.reference is not None else '<span class="muted">none</span>'
        )
        body.append(
            f"<tr><td>{_e(r.id)}</td><td>{_e(r.source)}</td><td>{_e(r.translation)}</td>"
            f"<td>{reference}</td><td>{_flags(r.flags)}</td>"
            f'<td class="num">{score}</td><td>{_e(r.status)}</td></tr>'
        )
    return f'<table class="rows"><tr>{head}</tr>{"".join(body)}</table>'


def render(data: ReportData) -> str:
    """The whole page. Sections always appear; an empty one says why it is empty."""
    labels = [s.shard_id for s in data.shards]
    throughput = [s.rows / s.seconds if s.seconds > 0 else 0.0 for s in data.shards]
    flag_rate = [100.0 * s.flagged / s.checked if s.checked else 0.0 for s in data.shards]
    glossary = (
        _table(sorted(data.glossary.items()))
        if data.glossary
        else '<p class="muted">the job used no glossary</p>'
    )
    formats = (
        _table(sorted(data.format_counts.items()), ("format_status", "rows"))
        if data.format_counts
        else '<p class="muted">no markup rows (or formats.mode: text)</p>'
    )
    sections = [
        ("summary", "Job summary", _table(list(data.summary.items()))),
        (
            "statuses",
            "Rows by status",
            _table(sorted(data.status_counts.items()), ("status", "rows")),
        ),
        (
            "flags",
            "Rows by QE flag",
            _table(sorted(data.flag_counts.items()), ("flag", "rows"))
            if data.flag_counts
            else '<p class="muted">no row flagged</p>',
        ),
        (
            "throughput",
            "Per-shard throughput",
            bar_chart("rows per second, by shard", labels, throughput, "rows/s"),
        ),
        (
            "flag-rates",
            "Per-shard flag rate",
            bar_chart("flagged rows, % of checked, by shard", labels, flag_rate, "%"),
        ),
        ("glossary", "Glossary adherence", glossary),
        ("formats", "Format statuses", formats),
        ("worst", "Worst sampled rows", _worst(data.worst)),
        *data.extra,
    ]
    body = "".join(
        f'<section id="{key}"><h2>{_e(title)}</h2>{content}</section>'
        for key, title, content in sections
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{_e(data.title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{_e(data.title)}</h1>{body}</body></html>\n"
    )
