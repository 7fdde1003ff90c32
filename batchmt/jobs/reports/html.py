"""`batchmt report OUTPUT`: gather a finished (or running) job's numbers into one HTML page.

Only committed shards count (their completion markers), as for `status` and `read_output`.
Sources: `_SUCCESS` / the markers for counts and timing, the quality files for the sampled
rows, and the data files for each sampled row's `qe_score` / `qe_flags`.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from typing import Any

import pyarrow.parquet as pq

from batchmt.jobs.reports.details import FLAGGED_CSV, flagged_csv, gather_details, sections
from batchmt.jobs.reports.render import ReportData, ShardLine, WorstRow, render
from batchmt.pipeline import columns
from batchmt.pipeline.outputs.commit import OutputLayout, completed_shards, job_status, read_success
from batchmt.pipeline.results import GlossaryAdherence, QeCounts, ShardResult
from batchmt.pipeline.storage.fs import open_fs, read_json

# Rows shown side by side: enough to see a pattern, few enough to read.
WORST_ROWS = 25


def _sample_rows(layout: OutputLayout, shard_id: str) -> list[WorstRow]:
    """The shard's quality sample, each row with its QE columns from the data file."""
    quality = read_json(layout.fs, layout.quality(shard_id))
    if not isinstance(quality, dict):
        return []
    samples = quality.get("samples") or []
    with layout.fs.open(layout.data(shard_id), "rb") as handle:
        names = pq.read_schema(handle).names
    wanted = [c for c in (columns.QE_SCORE, columns.QE_FLAGS) if c in names]
    scores: list[Any] = []
    flags: list[Any] = []
    if wanted:
        with layout.fs.open(layout.data(shard_id), "rb") as handle:
            table = pq.read_table(handle, columns=wanted)
        if columns.QE_SCORE in wanted:
            scores = table.column(columns.QE_SCORE).to_pylist()
        if columns.QE_FLAGS in wanted:
            flags = table.column(columns.QE_FLAGS).to_pylist()
    rows = []
    for sample in samples:
        index = int(sample.get("index", -1))
        score = scores[index] if 0 <= index < len(scores) else None
        row_flags = flags[index] if 0 <= index < len(flags) else sample.get("flags") or []
        rows.append(
            WorstRow(
                id=str(sample.get("id")),
                source=str(sample.get("source") or ""),
                translation=str(sample.get("translation") or ""),
                reference=sample.get("reference"),
                flags=list(row_flags or []),
                score=score,
                status=str(sample.get("status", "")),
            )
        )
    return rows


def _worst(rows: list[WorstRow]) -> list[WorstRow]:
    """Flagged rows first, then by ascending score (rows without a score last)."""
    checked = [r for r in rows if r.score is not None or r.flags]
    checked.sort(key=lambda r: (not r.flags, r.score if r.score is not None else 2.0))
    return checked[:WORST_ROWS]


def _glossary(results: dict[str, ShardResult]) -> dict[str, Any] | None:
    parts = [r.glossary for r in results.values() if r.glossary is not None]
    if not parts:
        return None
    total = GlossaryAdherence(sum(p.terms for p in parts), sum(p.honoured for p in parts))
    return total.to_dict()


def gather(layout: OutputLayout, csv_name: str | None = None) -> ReportData:
    """The page's numbers; `csv_name`: the flagged rows' CSV the page links to."""
    results = completed_shards(layout)
    status = job_status(layout)
    success = read_success(layout) or {}
    quality = status.get("quality") or {}
    qe = QeCounts.total([r.qe for r in results.values() if r.qe is not None])
    formats: Counter[str] = Counter()
    for result in results.values():
        formats.update(result.format_status_counts)
    shards = status.get("shards", {})
    summary: dict[str, Any] = {
        "output": layout.root,
        "job": success.get("job_name", ""),
        "model": success.get("model", (quality.get("signature") or {}).get("model", "")),
        "languages": f"{success.get('source_lang', '?')} -> {success.get('target_lang', '?')}",
        "complete": "yes (_SUCCESS written)" if status.get("success") else "no",
        "shards done": f"{shards.get('done', 0)} / {shards.get('total', 0)}",
        "rows": status.get("rows", {}).get("done", 0),
        "rows checked by QE": qe.checked,
        "rows flagged by QE": qe.flagged,
        "flagged rate": qe.flagged / qe.checked if qe.checked else 0.0,
        "fallback re-translations": qe.fallback_tried,
        "fallback won": qe.fallback_won,
        "BLEU": quality.get("bleu") if quality.get("bleu") is not None else "no references",
        "chrF": quality.get("chrf") if quality.get("chrf") is not None else "no references",
    }
    samples = [row for shard_id in sorted(results) for row in _sample_rows(layout, shard_id)]
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
        title=f"batchmt report: {summary['job'] or layout.root}",
        summary=summary,
        status_counts=status.get("rows", {}).get("by_status", {}),
        flag_counts=qe.flag_counts,
        shards=lines,
        glossary=_glossary(results),
        format_counts=dict(formats),
        worst=_worst(samples),
        extra=sections(gather_details(layout, results, success), csv_name),
    )


def cmd_report(args: argparse.Namespace) -> int:
    options = dict(item.split("=", 1) for item in args.storage_option)
    fs, root = open_fs(args.output, options)
    layout = OutputLayout.read(fs, root)
    if not completed_shards(layout):
        raise FileNotFoundError(
            f"{args.output} holds no completed shard: run `batchmt run` or `batchmt score` "
            "with this output.path first"
        )
    target = args.out or f"{root.rstrip('/')}/report.html"
    data = gather(layout, FLAGGED_CSV)
    page = render(data)
    flagged = gather_details(layout, completed_shards(layout), read_success(layout) or {})
    csv_target = f"{target.rsplit('/', 1)[0]}/{FLAGGED_CSV}" if "/" in target else FLAGGED_CSV
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for path, text in ((target, page), (csv_target, flagged_csv(flagged.flagged))):
        with open(path, "w", encoding="utf-8") if args.out else fs.open(path, "w") as out:
            out.write(text)
    print(f"batchmt report: wrote {target} and {csv_target}")
    return 0
