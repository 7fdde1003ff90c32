"""The report's detail sections: the run's timeline, a `qe_score` histogram, per-term
glossary results and every flagged row (with a CSV export written beside the page).

Gathered from the output alone: `_SUCCESS` timings for the phases, the completion markers'
times for the shards (a marker is written when its shard is committed; the shard's own
seconds give its start), and the committed data files' QE and glossary columns.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from batchmt.jobs.reports.render import _e, _flags, bar_chart
from batchmt.pipeline import columns
from batchmt.pipeline.outputs.layout import OutputLayout
from batchmt.pipeline.results import ShardResult

# Flagged rows shown in the page; the CSV beside it holds every one.
FLAGGED_SHOWN = 500
HISTOGRAM_BINS = 10
FLAGGED_CSV = "report-flagged.csv"
_PHASES = (
    ("plan", "plan"),
    ("connect", "start Ray"),
    ("pool_start", "load model"),
    ("translate", "translate"),
)


@dataclass(frozen=True)
class FlaggedRow:
    id: str
    source: str
    translation: str
    flags: Sequence[str]
    score: float | None
    shard_id: str


@dataclass
class Details:
    phases: list[tuple[str, float]] = field(default_factory=list)  # (phase, seconds)
    shard_spans: list[tuple[str, float, float]] = field(default_factory=list)  # id, start, end
    scores: list[float] = field(default_factory=list)
    terms: dict[str, tuple[int, int]] = field(default_factory=dict)  # term -> (hit, missed)
    flagged: list[FlaggedRow] = field(default_factory=list)


def merge_details(parts: Sequence[Details]) -> Details:
    """Several runs of one output (input.since runs, a table's jobs) on one page: phases of
    the last run, shards, scores and flagged rows of all, term counts summed."""
    merged = Details(phases=parts[-1].phases if parts else [])
    terms: dict[str, tuple[int, int]] = {}
    for part in parts:
        merged.shard_spans += part.shard_spans
        merged.scores += part.scores
        merged.flagged += part.flagged
        for term, (hit, missed) in part.terms.items():
            old = terms.get(term, (0, 0))
            terms[term] = (old[0] + hit, old[1] + missed)
    merged.terms = dict(sorted(terms.items()))
    return merged


def gather_details(
    layout: OutputLayout, results: Mapping[str, ShardResult], success: Mapping[str, Any]
) -> Details:
    timings = success.get("timings_last_run") or {}
    details = Details(
        phases=[(label, float(timings[key])) for key, label in _PHASES if timings.get(key)]
    )
    details.shard_spans = _shard_spans(layout, results)
    id_column = str(success.get("id_column") or "id")
    text_column = str(success.get("text_column") or "text")
    hits: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    for shard_id in sorted(results):
        table = _read(layout, shard_id)
        if table is None:
            continue
        names = set(table.column_names)
        if columns.QE_SCORE in names:
            details.scores += [
                s for s in table.column(columns.QE_SCORE).to_pylist() if s is not None
            ]
        for column, counter in ((columns.GLOSSARY_HITS, hits), (columns.GLOSSARY_MISSED, missed)):
            if column in names:
                for terms in table.column(column).to_pylist():
                    counter.update(_term(t) for t in terms or [])
        if columns.QE_FLAGS in names:
            details.flagged += _flagged(table, shard_id, id_column, text_column)
    details.terms = {t: (hits[t], missed[t]) for t in sorted(set(hits) | set(missed))}
    return details


def _read(layout: OutputLayout, shard_id: str) -> Any:
    try:
        with layout.fs.open(layout.data(shard_id), "rb") as handle:
            return pq.read_table(handle)
    except FileNotFoundError:
        return None


def _term(value: Any) -> str:
    """A glossary column entry: a term string, or a {source, target} struct."""
    if isinstance(value, dict):
        source, target = value.get("source"), value.get("target")
        return f"{source} -> {target}" if target is not None else str(source)
    return str(value)


def _flagged(table: Any, shard_id: str, id_column: str, text_column: str) -> list[FlaggedRow]:
    names = set(table.column_names)
    flags = table.column(columns.QE_FLAGS).to_pylist()

    def values(name: str) -> list[Any]:
        return table.column(name).to_pylist() if name in names else [None] * table.num_rows

    ids, sources = values(id_column), values(text_column)
    translations, scores = values(columns.TRANSLATION), values(columns.QE_SCORE)
    return [
        FlaggedRow(
            str(ids[i]),
            str(sources[i] or ""),
            str(translations[i] or ""),
            list(flags[i]),
            scores[i],
            shard_id,
        )
        for i in range(table.num_rows)
        if flags[i]
    ]


def _shard_spans(
    layout: OutputLayout, results: Mapping[str, ShardResult]
) -> list[tuple[str, float, float]]:
    """(shard, start, end) in seconds from the first start: end is the marker's time."""
    spans = []
    for shard_id, result in results.items():
        try:
            info = layout.fs.info(layout.completion(shard_id))
        except (FileNotFoundError, OSError):
            continue
        stamp = info.get("mtime") or info.get("LastModified")
        end = stamp.timestamp() if hasattr(stamp, "timestamp") else stamp
        if isinstance(end, int | float):
            spans.append((shard_id, float(end) - result.seconds, float(end)))
    if not spans:
        return []
    first = min(start for _, start, _ in spans)
    return sorted((sid, start - first, end - first) for sid, start, end in spans)


def flagged_csv(rows: Sequence[FlaggedRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "shard", "qe_score", "qe_flags", "source", "translation"])
    for r in rows:
        score = "" if r.score is None else f"{r.score:.4f}"
        writer.writerow([r.id, r.shard_id, score, ";".join(r.flags), r.source, r.translation])
    return out.getvalue()


# -- rendering --------------------------------------------------------------------------------


def _timeline(details: Details) -> str:
    parts = []
    if details.phases:
        total = sum(s for _, s in details.phases) or 1e-9
        x, bar = 0.0, []
        colors = ("#9bb7d4", "#c9a0dc", "#f2c48d", "#4a7fb5")
        for (label, seconds), color in zip(details.phases, colors, strict=False):
            w = 600 * seconds / total
            bar.append(
                f'<rect x="{x:.1f}" y="18" width="{max(w, 1):.1f}" height="18" fill="{color}">'
                f"<title>{_e(label)}: {seconds:.1f} s</title></rect>"
                f'<text x="{x + 2:.1f}" y="50">{_e(label)} {seconds:.1f}s</text>'
            )
            x += w
        parts.append(
            '<svg role="img" aria-label="phases of the last run" width="640" height="60" '
            'xmlns="http://www.w3.org/2000/svg"><text x="0" y="12" font-weight="bold">'
            f"phases of the last run ({total:.1f} s)</text>{''.join(bar)}</svg>"
        )
    else:
        parts.append('<p class="muted">no phase timings (the job has not finished a run)</p>')
    if details.shard_spans:
        end = max(e for _, _, e in details.shard_spans) or 1e-9
        rows, left, width = [], 150, 480
        for i, (sid, start, stop) in enumerate(details.shard_spans):
            y = 20 + i * 18
            x0, w = left + width * start / end, max(1.0, width * (stop - start) / end)
            rows.append(
                f'<text x="0" y="{y + 11}">{_e(sid[:22])}</text>'
                f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="14" fill="#4a7fb5">'
                f"<title>{_e(sid)}: {start:.1f}-{stop:.1f} s</title></rect>"
            )
        height = 30 + 18 * len(details.shard_spans)
        parts.append(
            f'<svg role="img" aria-label="shards over time" width="640" height="{height}" '
            'xmlns="http://www.w3.org/2000/svg"><text x="0" y="12" font-weight="bold">'
            f"shards over time (0-{end:.1f} s, by commit)</text>{''.join(rows)}</svg>"
        )
    return "".join(parts)


def _histogram(scores: Sequence[float]) -> str:
    if not scores:
        return '<p class="muted">no qe_score in the output (rows not translated)</p>'
    low, high = min(scores), max(scores)
    step = (high - low) / HISTOGRAM_BINS or 1.0
    counts = [0] * HISTOGRAM_BINS
    for s in scores:
        counts[min(int((s - low) / step), HISTOGRAM_BINS - 1)] += 1
    labels = [f"{low + i * step:.2f} to {low + (i + 1) * step:.2f}" for i in range(HISTOGRAM_BINS)]
    chart = bar_chart(
        f"qe_score of {len(scores):,} rows", labels, [float(c) for c in counts], "rows"
    )
    return chart


def _terms(terms: Mapping[str, tuple[int, int]]) -> str:
    if not terms:
        return '<p class="muted">no glossary terms matched in the output</p>'
    rows = "".join(
        f'<tr><td>{_e(term)}</td><td class="num">{hit:,}</td><td class="num">{miss:,}</td>'
        f'<td class="num">{hit / (hit + miss):.0%}</td></tr>'
        for term, (hit, miss) in sorted(terms.items(), key=lambda kv: (-kv[1][1], kv[0]))
    )
    return (
        "<table><tr><th>term</th><th>honoured</th><th>missed</th><th>adherence</th></tr>"
        f"{rows}</table>"
    )


def _flagged_table(rows: Sequence[FlaggedRow], csv_name: str | None) -> str:
    if not rows:
        return '<p class="muted">no row flagged</p>'
    export = (
        f'<p><a href="{_e(csv_name)}" download>{_e(csv_name)}</a>: all {len(rows):,} flagged '
        "rows as CSV</p>"
        if csv_name
        else ""
    )
    shown = rows[:FLAGGED_SHOWN]
    more = (
        f'<p class="muted">{len(rows) - len(shown):,} more in the CSV</p>'
        if len(rows) > len(shown)
        else ""
    )
    body = "".join(
        f"<tr><td>{_e(r.id)}</td><td>{_e(r.source)}</td><td>{_e(r.translation)}</td>"
        f"<td>{_flags(r.flags)}</td>"
        f'<td class="num">{"" if r.score is None else f"{r.score:.3f}"}</td></tr>'
        for r in shown
    )
    head = "<tr><th>id</th><th>source</th><th>translation</th><th>flags</th><th>qe_score</th></tr>"
    return f'{export}<table class="rows">{head}{body}</table>{more}'


def sections(details: Details, csv_name: str | None) -> list[tuple[str, str, str]]:
    """(id, title, html) of the detail sections, in page order."""
    return [
        ("timeline", "Timeline", _timeline(details)),
        ("qe-histogram", "qe_score histogram", _histogram(details.scores)),
        ("terms", "Glossary terms", _terms(details.terms)),
        (
            "flagged",
            f"Flagged rows ({len(details.flagged):,})",
            _flagged_table(details.flagged, csv_name),
        ),
    ]
