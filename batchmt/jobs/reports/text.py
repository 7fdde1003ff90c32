"""Reports a person can read: after a run, for `status`, for `verify`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from batchmt.jobs.reports.flags import flag_warning
from batchmt.pipeline.ids import printable
from batchmt.pipeline.inputs.duplicates import DuplicateIds

if TYPE_CHECKING:
    from batchmt.jobs.driver import JobOutcome


def _counts(by_status: dict[str, int]) -> str:
    return ", ".join(f"{status} {n:,}" for status, n in sorted(by_status.items())) or "none"


def job_report(outcome: JobOutcome) -> str:
    s = outcome.summary
    verb = {
        "complete": "already complete, nothing to do",
        "resume": (
            f"resumed: {outcome.shards_skipped} shard(s) were done, {outcome.shards_run} run now"
        ),
        "new": f"{outcome.shards_run} shard(s) run",
    }[outcome.state]
    lines = [
        f"batchmt: job {s['job_name']!r} succeeded ({verb}) in {outcome.wall_seconds:.1f}s",
        f"  rows:    {s['rows_in']:,} in -> {s['ok']:,} translated, {s['failed']:,} failed, "
        f"{_untranslated(s):,} left as they were ({_counts(s['by_status'])})",
        f"  model:   {s['model']} ({s['quantization']}, backend {s.get('backend', '?')}), "
        f"{s['source_lang']} -> {s['target_lang']}",
        _output_line(outcome),
        f"  inspect: batchmt status {outcome.output_path}",
    ]
    warning = flag_warning(s)
    if warning:
        lines.insert(2, f"  WARNING: {warning}")
    if "rows_new" in s:  # an input.since run
        lines.insert(
            2,
            f"  increment: {s['rows_new']:,} new rows, {s.get('rows_replaced') or 0:,} older "
            "translations replaced",
        )
    repeated = s.get("duplicate_ids")
    if isinstance(repeated, dict):
        lines.insert(2, f"  ids:     {DuplicateIds(**repeated).describe()}")
    memory = _memory_line(s.get("memory") or {})
    if memory:
        lines.append(memory)
    t = outcome.timings
    if t.workers:
        busy = t.worker_busy / max(t.translate * t.workers, 1e-9)
        overhead = t.driver_busy / max(outcome.wall_seconds, 1e-9)
        lines.append(
            f"  timing:  plan {t.plan:.1f}s, ray {t.connect:.1f}s, {t.workers} worker(s) loaded "
            f"in {t.pool_start:.1f}s, translate {t.translate:.1f}s (workers busy {busy:.0%}, "
            f"driver loop {t.driver_busy:.2f}s = {overhead:.1%} of wall)"
        )
    return "\n".join(lines)


def _untranslated(s: dict[str, Any]) -> int:
    """Rows written but neither translated nor failed (empty or whitespace-only input)."""
    return max(0, int(s.get("rows_out", 0)) - int(s["ok"]) - int(s["failed"]))


def _output_line(outcome: JobOutcome) -> str:
    table = outcome.summary.get("table")
    if table:
        return (
            f"  output:  {table['format']} table {table.get('identifier') or outcome.output_path}, "
            f"version {table.get('committed_version')} ({table['mode']}; bookkeeping in "
            f"{outcome.output_path}/_batchmt/{table['job_key']}/)"
        )
    run = outcome.summary.get("run_folder")
    if run:  # a Parquet output's input.since run: its bookkeeping has its own folder
        return f"  output:  {outcome.output_path}/data/  (this run's _SUCCESS etc. in {run}/)"
    return f"  output:  {outcome.output_path}/data/  (_SUCCESS, quality/, _manifest.json beside it)"


def status_report(path: str, status: dict[str, Any]) -> str:
    lines = [f"{path}"]
    shards = status.get("shards", {})
    lines.append(
        f"  shards:  {shards.get('done', 0)}/{shards.get('total') or '?'} done, "
        f"{shards.get('pending', 0)} pending"
    )
    rows = status.get("rows", {})
    lines.append(
        f"  rows:    {rows.get('input') or 0:,} in, {rows.get('ok', 0):,} translated, "
        f"{rows.get('failed', 0):,} failed ({_counts(rows.get('by_status', {}))})"
    )
    lines.append(f"  success: {'yes (_SUCCESS written)' if status.get('success') else 'no'}")
    driver = status.get("driver")
    if driver:
        who = f"run {driver['run_id']} on host {driver['host']}, pid {driver['pid']}"
        beat = f"last heartbeat {driver['heartbeat_s_ago']:.0f}s ago"
        if driver.get("alive"):
            lines.append(f"  driver:  running: {who}, {beat}")
        else:
            why = "released" if driver.get("released") else "lease expired"
            lines.append(f"  driver:  none running (last: {who}, {beat}, {why}); a rerun resumes")
    run = status.get("run") or {}
    if "rows_new" in run:  # an input.since run
        lines.append(
            f"  run:     {run.get('run_id')} finished {run.get('finished_at')}: "
            f"{run['rows_new']:,} new rows, {run.get('rows_replaced') or 0:,} older rows replaced"
        )
    lines.extend(_lake_lines(status))
    qe = status.get("qe") or {}
    if qe.get("checked"):
        lines.append(
            f"  qe:      {qe['flagged']:,} of {qe['checked']:,} rows flagged "
            f"({_counts(qe.get('flag_counts', {}))}); fallback won {qe.get('fallback_won', 0):,} "
            f"of {qe.get('fallback_tried', 0):,}"
        )
    memory = _memory_line(status.get("memory") or {})
    if memory:
        lines.append(memory)
    quality = status.get("quality") or {}
    if quality:
        lines.append("  quality: " + _quality_line(quality))
    return "\n".join(lines)


def _lake_lines(status: dict[str, Any]) -> list[str]:
    """Partitions, the input version read and the table version committed, when any."""
    lines = []
    if status.get("partition_by"):
        lines.append(f"  partitions: {', '.join(status['partition_by'])}")
    source = status.get("source") or {}
    if source.get("version") is not None:
        where = source.get("table") or source.get("location") or ""
        lines.append(f"  read:    {source.get('format')} {where} version {source['version']}")
    table = status.get("table")
    if table and not table.get("added_files") and table.get("committed_version") == -1:
        lines.append(f"  table:   {table.get('format')}: nothing committed (no rows planned)")
    elif table:
        where = table.get("identifier") or table.get("location")
        lines.append(
            f"  table:   {table.get('format')} {where}, {table.get('mode')}: committed version "
            f"{table.get('committed_version')} (+{table.get('added_files', 0)} files, "
            f"-{table.get('removed_files', 0)} replaced; job {table.get('job_key')})"
        )
    return lines


def _memory_line(memory: dict[str, Any]) -> str | None:
    """The translation memory's part, or None when it served and stored nothing."""
    if not memory.get("from_memory") and not memory.get("stored"):
        return None
    return (
        f"  memory:  {memory.get('from_memory', 0):,} rows reused, not decoded "
        f"({memory.get('deduplicated', 0):,} repeats within the job); "
        f"{memory.get('stored', 0):,} stored"
    )


def _quality_line(quality: dict[str, Any]) -> str:
    """Scalars of the merged quality summary; unset scores (no reference column) left out."""
    parts = []
    for key, value in sorted(quality.items()):
        if value is None or isinstance(value, (dict, list)):
            continue
        parts.append(f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(parts)


def verify_report(report: dict[str, Any]) -> str:
    head = "verify: OK" if report.get("ok") else "verify: PROBLEMS FOUND"
    lines = [head]
    for key, value in sorted(report.items()):
        if key == "ok":
            continue
        if isinstance(value, dict):
            lines.append(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in value.items()))
        elif isinstance(value, list):
            # Ids come from the data: escaped, so none can drive the terminal.
            shown = ", ".join(printable(v) for v in value[:10]) + (
                " ..." if len(value) > 10 else ""
            )
            lines.append(f"  {key}: {len(value)}" + (f" ({shown})" if value else ""))
        else:
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def print_json(obj: object) -> None:
    """Machine-readable output (`status --json`): stable key order, anything else as str."""
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))
