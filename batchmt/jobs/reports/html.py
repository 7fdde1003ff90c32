"""`batchmt report OUTPUT`: gather a finished (or running) job's numbers into one HTML page.

The output is opened as every reader opens it (pipeline/outputs/runs.py): a plain Parquet
job, the runs of an `input.since` output, or the job folders of a Delta or Iceberg table;
the page covers all its runs. Only committed shards count (their completion markers), as for
`status` and `read_output`. Sources: `_SUCCESS` / the markers for counts and timing, the
quality files for the sampled rows, and the data files for each sampled row's `qe_score` /
`qe_flags`.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from typing import Any

import pyarrow.parquet as pq

from batchmt.jobs.reports.details import (
    FLAGGED_CSV,
    Details,
    flagged_csv,
    gather_details,
    merge_details,
    sections,
)
from batchmt.jobs.reports.render import ReportData, ShardLine, WorstRow, render
from batchmt.pipeline import columns
from batchmt.pipeline.outputs.layout import OutputLayout
from batchmt.pipeline.outputs.records.quality import QualityFile, read_quality
from batchmt.pipeline.outputs.records.status import JobStatus
from batchmt.pipeline.outputs.runs import OutputView, Run, open_output
from batchmt.pipeline.quality.samples import merge_quality
from batchmt.pipeline.results import GlossaryAdherence, QeCounts, ShardResult

# Rows shown side by side: enough to see a pattern, few enough to read.
WORST_ROWS = 25


def _sample_rows(layout: OutputLayout, shard_id: str, quality: QualityFile) -> list[WorstRow]:
    """The shard's quality sample, each row with its QE columns from the data file."""
    path = layout.data(shard_id)
    with layout.fs.open(path, "rb") as handle:
        names = pq.read_schema(handle).names
    wanted = [c for c in (columns.QE_SCORE, columns.QE_FLAGS) if c in names]
    scores: list[Any] = []
    flags: list[Any] = []
    if wanted:
        with layout.fs.open(path, "rb") as handle:
            table = pq.read_table(handle, columns=wanted)
        if columns.QE_SCORE in wanted:
            scores = table.column(columns.QE_SCORE).to_pylist()
        if columns.QE_FLAGS in wanted:
            flags = table.column(columns.QE_FLAGS).to_pylist()
    rows = []
    for sample in quality.samples:
        index = sample.index
        score = scores[index] if 0 <= index < len(scores) else None
        row_flags = flags[index] if 0 <= index < len(flags) else sample.flags
        rows.append(
            WorstRow(
                id=str(sample.id),
                source=sample.source,
                translation=sample.translation,
                reference=sample.reference,
                flags=list(row_flags or []),
                score=score,
                status=sample.status,
            )
        )
    return rows


def _worst(rows: list[WorstRow]) -> list[WorstRow]:
    """Flagged rows first, then by ascending score (rows without a score last)."""
    checked = [r for r in rows if r.score is not None or r.flags]
    checked.sort(key=lambda r: (not r.flags, r.score if r.score is not None else 2.0))
    return checked[:WORST_ROWS]


def _glossary(results: list[ShardResult]) -> dict[str, Any] | None:
    parts = [r.glossary for r in results if r.glossary is not None]
    if not parts:
        return None
    total = GlossaryAdherence(sum(p.terms for p in parts), sum(p.honoured for p in parts))
    return total.to_dict()


def _label(run: Run, shard_id: str, several: bool) -> str:
    """A shard's name on the page: with several runs, which run's shard it is."""
    return f"{run.key}/{shard_id}" if several else shard_id


def gather(view: OutputView, csv_name: str | None = None) -> ReportData:
    """The page's numbers over every run; `csv_name`: the flagged rows' CSV the page links to."""
    several = len(view.runs) > 1
    statuses: list[tuple[Run, JobStatus]] = [(run, run.status()) for run in view.runs]
    results = {
        _label(run, sid, several): result
        for run, status in statuses
        for sid, result in status.done.items()
    }
    qualities = [
        (run, sid, q)
        for run, status in statuses
        for sid, q in sorted(read_quality(run.layout, set(status.done)).items())
    ]
    quality = merge_quality([q.body for _run, _sid, q in qualities]) if qualities else {}
    qe = QeCounts.total([r.qe for r in results.values() if r.qe is not None])
    formats: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    for result in results.values():
        formats.update(result.format_status_counts)
        by_status.update(result.status_counts)
    finished = [run.success for run in view.runs if run.success is not None]
    last = finished[-1] if finished else None
    total = sum(status.shards_total or 0 for _run, status in statuses)
    complete = bool(view.runs) and len(finished) == len(view.runs)
    summary: dict[str, Any] = {
        "output": view.url,
        "output kind": view.kind + (f", {len(view.runs)} runs" if several else ""),
        "job": (last.job_name if last else None) or "",
        "model": (last.model if last else None)
        or (quality.get("signature") or {}).get("model", ""),
        "languages": last.languages if last else "? -> ?",
        "complete": "yes (_SUCCESS written)" if complete else "no",
        "shards done": f"{len(results)} / {total}",
        "rows": sum(status.rows_done for _run, status in statuses),
        "rows checked by QE": qe.checked,
        "rows flagged by QE": qe.flagged,
        "flagged rate": qe.flagged / qe.checked if qe.checked else 0.0,
        "fallback re-translations": qe.fallback_tried,
        "fallback won": qe.fallback_won,
        "BLEU": quality.get("bleu") if quality.get("bleu") is not None else "no references",
        "chrF": quality.get("chrf") if quality.get("chrf") is not None else "no references",
    }
    samples = [row for run, sid, q in qualities for row in _sample_rows(run.layout, sid, q)]
    lines = [
        ShardLine(
            sid,
            r.num_rows,
            r.seconds,
            r.qe.checked if r.qe else 0,
            r.qe.flagged if r.qe else 0,
        )
        for sid, r in sorted(results.items())
    ]
    return ReportData(
        title=f"batchmt report: {summary['job'] or view.url}",
        summary=summary,
        status_counts=dict(sorted(by_status.items())),
        flag_counts=qe.flag_counts,
        shards=lines,
        glossary=_glossary(list(results.values())),
        format_counts=dict(formats),
        worst=_worst(samples),
        extra=sections(details_of(view), csv_name),
    )


def details_of(view: OutputView) -> Details:
    """The detail sections over every run of the output, oldest run first."""
    parts = [
        gather_details(run.layout, run.status().done, run.success.body if run.success else {})
        for run in view.runs
    ]
    return merge_details(parts)


def cmd_report(args: argparse.Namespace) -> int:
    options = dict(item.split("=", 1) for item in args.storage_option)
    view = open_output(args.output, options)
    if not any(run.completed() for run in view.runs):
        raise FileNotFoundError(
            f"{args.output} holds no completed shard: run `batchmt run` or `batchmt score` "
            "with this output.path first"
        )
    target = args.out or f"{view.root.rstrip('/')}/report.html"
    data = gather(view, FLAGGED_CSV)
    page = render(data)
    flagged = details_of(view).flagged
    csv_target = f"{target.rsplit('/', 1)[0]}/{FLAGGED_CSV}" if "/" in target else FLAGGED_CSV
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fs = view.fs
    for path, text in ((target, page), (csv_target, flagged_csv(flagged))):
        with open(path, "w", encoding="utf-8") if args.out else fs.open(path, "w") as out:
            out.write(text)
    print(f"batchmt report: wrote {target} and {csv_target}")
    return 0
