"""What each `batchmt` verb does; `cli.py` parses arguments and maps errors to exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from batchmt.jobs.driver import JobFailed, run_job
from batchmt.jobs.prepare import make_plan
from batchmt.jobs.reports.text import job_report, print_json, status_report, verify_report
from batchmt.jobs.submission.upload import UploadError
from batchmt.pipeline.inputs.corpus import CorpusError
from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.outputs.commit import (
    OutputConflictError,
    OutputLayout,
    job_status,
    table_job_roots,
)
from batchmt.pipeline.outputs.lease import LeaseHeldError
from batchmt.pipeline.outputs.tables.common import TableCommitError
from batchmt.pipeline.outputs.verify import verify_output, verify_runs
from batchmt.pipeline.spec import JobSpec, SpecError, load_spec
from batchmt.pipeline.storage.fs import StorageError, open_fs
from batchmt.pipeline.text.glossary_files import GlossaryError
from batchmt.workers.engines.base import EngineLoadError
from batchmt.workers.quantization import QuantizationError

# Errors that mean "this job cannot run as configured": one line, exit 2.
USER_ERRORS: tuple[type[Exception], ...] = (
    SpecError,
    CorpusError,
    OutputConflictError,
    EngineLoadError,
    GlossaryError,
    LeaseHeldError,  # another driver runs on the same output
    StorageError,
    UploadError,  # submit: a config outside the folder, or one that looks like a secret
    TableCommitError,  # the output table or its catalog does not fit the job
    FileNotFoundError,
    QuantizationError,  # quantize: calibration file, formats, budget, output folder
)

__all__ = ["USER_ERRORS", "JobFailed", "dispatch"]


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "status":
        return cmd_status(args)
    if args.command == "report":
        from batchmt.jobs.reports.html import cmd_report

        return cmd_report(args)
    if args.command == "quantize":
        from batchmt.jobs.quantize.command import cmd_quantize

        overrides = [*overrides_from_file(args.overrides_file), *args.overrides]
        return cmd_quantize(args.config, overrides, show_progress=not args.no_progress)
    spec = load_spec(args.config, [*overrides_from_file(args.overrides_file), *args.overrides])
    if args.command == "score":
        from batchmt.jobs.score import cmd_score

        return cmd_score(spec, show_progress=not args.no_progress)
    if args.command == "run":
        return cmd_run(spec, show_progress=not args.no_progress)
    if args.command == "plan":
        plan = make_plan(spec)
        print(plan.to_json())
        print(plan_summary(plan), file=sys.stderr)  # stdout stays one JSON document
        return 0
    if args.command == "verify":
        return cmd_verify(spec, as_json=args.json)
    if args.command == "submit":
        from batchmt.jobs.submission.submit import submit

        return submit(args.config, args.overrides, args.address, wait=not args.no_wait)
    raise SpecError(f"unknown command {args.command!r}")


def plan_summary(plan: Plan) -> str:
    """One line: what was read (format, pinned version, filter, files kept vs skipped)."""
    source = plan.source
    kind = source.get("format", "parquet")
    if kind == "delta":
        what = f"Delta table {source.get('location')} version {source.get('version')}"
    elif kind == "iceberg":
        where = source.get("table") or source.get("location")
        what = f"Iceberg table {where} snapshot {source.get('version')}"
    else:
        what = f"Parquet {plan.input_path}"
    files, partitions = source.get("files"), source.get("partitions")
    kept = f"{files} file(s)"
    if source.get("filter") is not None:
        kept = (
            f"filter {source['filter']!r} kept {files} of "
            f"{files + source.get('files_skipped', 0)} file(s), {partitions} of "
            f"{partitions + source.get('partitions_skipped', 0)} partition(s)"
        )
    elif plan.partition_columns:
        kept += f" in {partitions} partition(s)"
    parts = f"; output partitioned by {', '.join(plan.output_partitions)}"
    return (
        f"plan: {what}; {kept}; {since_summary(source)}{plan.num_rows} rows in "
        f"{len(plan.shards)} shard(s){parts if plan.output_partitions else ''}"
    )


def since_summary(source: dict[str, Any]) -> str:
    """input.since's part of the plan line: what is new, and since what ("" without it)."""
    since = source.get("since")
    if not isinstance(since, dict):
        return ""
    start = since.get("from")
    if not start:
        origin = "no earlier run: all new" if since.get("mode") == "last" else "all new"
    elif "run_id" in start:
        origin = f"since run {start.get('run_id') or start.get('job_key')}"
    elif "timestamp" in start:
        origin = f"since {start['timestamp']}"
    else:
        origin = f"since version {start.get('version')}"
    seen_rows = since.get("rows_already_seen")
    rows = f", {seen_rows} rows" if seen_rows is not None else ""
    return (
        f"{origin}: {since.get('files_new')} new file(s), {since.get('files_already_seen')} "
        f"already translated{rows}; "
    )


def overrides_from_file(path: str | None) -> list[str]:
    """`--set-file`: a JSON list of KEY=VALUE strings (what `batchmt submit` writes)."""
    if not path:
        return []
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"--set-file {path} not found") from None
    except ValueError as exc:
        raise SpecError(f"--set-file {path} is not JSON ({exc})") from None
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise SpecError(f'--set-file {path} must hold a JSON list of "key=value" strings')
    return items


def cmd_run(spec: JobSpec, *, show_progress: bool) -> int:
    if spec.input.translation_column is not None:
        raise SpecError(
            "input.translation_column names translations to score: use `batchmt score`, "
            "or remove the key to translate"
        )
    outcome = run_job(spec, base_dir=str(Path.cwd()), show_progress=show_progress)
    print(job_report(outcome))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    options = dict(item.split("=", 1) for item in args.storage_option)
    fs, root = open_fs(args.output, options)
    jobs = table_job_roots(fs, root)
    if jobs:  # a table output: every job that wrote it, each from its own folder
        statuses = [job_status(OutputLayout.read(fs, job)) for job in jobs]
        # Oldest run first (input.since runs are named by their increment, not their time);
        # unfinished ones last.
        order = sorted(
            range(len(jobs)), key=lambda i: (statuses[i]["run"].get("finished_at") or "~", jobs[i])
        )
        jobs, statuses = [jobs[i] for i in order], [statuses[i] for i in order]
        if args.json:
            print_json({"table": args.output, "jobs": statuses})
        else:
            print("\n".join(status_report(job, status) for job, status in zip(jobs, statuses)))
        return 0
    status = job_status(OutputLayout.read(fs, root))
    if args.json:
        print_json(status)
    else:
        print(status_report(args.output, status))
    return 0


def cmd_verify(spec: JobSpec, *, as_json: bool = False) -> int:
    job = OutputLayout.for_job(spec)  # the job's own folder, partitions from its manifest
    if spec.input.since is not None and not job.is_table:
        # input.since runs of a Parquet output: all of them together against the input now.
        runs = [OutputLayout.read(job.fs, run) for run in table_job_roots(job.fs, job.root)]
        report = verify_runs([r for r in runs if not r.is_table], spec.input).to_dict()
    else:
        report = verify_output(OutputLayout.read(job.fs, job.root), spec.input).to_dict()
    if as_json:
        print_json(report)
    else:
        print(verify_report(report))
    if not report["ok"]:
        print("verify: output does not match input (see above)", file=sys.stderr)
        return 1
    return 0
