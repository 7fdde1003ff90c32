"""What each `batchmt` verb does; `cli.py` parses arguments and maps errors to exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from batchmt.jobs.driver import run_job
from batchmt.jobs.prepare import make_plan
from batchmt.jobs.reports.text import job_report, print_json, status_report, verify_report
from batchmt.pipeline.errors import JobFailed, UserError
from batchmt.pipeline.inputs.duplicates import duplicate_ids
from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.outputs.layout import OutputLayout
from batchmt.pipeline.outputs.lease import current_lease
from batchmt.pipeline.outputs.runs import open_output
from batchmt.pipeline.outputs.verify import verify_output, verify_runs
from batchmt.pipeline.spec import JobSpec, SpecError, load_spec
from batchmt.pipeline.storage.fs import StorageError, open_fs
from batchmt.workers.engines.vllm_backend.runtime import resolved_backend

# Errors that mean "this job cannot run as configured": one line, exit 2. Every such error
# of the project derives from UserError; a config file that is not there is the one builtin.
USER_ERRORS: tuple[type[Exception], ...] = (UserError, FileNotFoundError)

# Storage clients' errors that mean "cannot get in", matched by name (botocore is only
# there with s3fs): the job cannot start; one line, exit 2.
_NO_ACCESS = {
    "NoCredentialsError": "no credentials found",
    "PartialCredentialsError": "incomplete credentials",
    "NoRegionError": "no region set",
}

__all__ = ["USER_ERRORS", "JobFailed", "could_not_start", "dispatch"]


def could_not_start(exc: Exception) -> str | None:
    """The one-line message for a storage client's access error; None for anything else."""
    what = _NO_ACCESS.get(type(exc).__name__)
    if what is None:
        return None
    return (
        f"object storage: {what} ({exc}); set credentials in the environment (AWS_* "
        "variables, ~/.aws, an instance role) or in input/output.storage_options (key, "
        "secret, endpoint_url, anon: true for public buckets)"
    )


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
    overrides = [*overrides_from_file(args.overrides_file), *args.overrides]
    if getattr(args, "max_flag_rate", None) is not None:
        overrides.append(f"quality.max_flag_rate={args.max_flag_rate}")
    spec = load_spec(args.config, overrides)
    if args.command == "score":
        from batchmt.jobs.score import cmd_score

        return cmd_score(spec, show_progress=not args.no_progress)
    if args.command == "run":
        return cmd_run(spec, show_progress=not args.no_progress)
    if args.command == "plan":
        backend = resolved_backend(spec.model, str(Path.cwd()))
        plan = make_plan(spec)
        if args.json:
            print(plan.to_json())
            # stdout stays one JSON document
            print(f"{plan_summary(plan)}; backend {backend}", file=sys.stderr)
        else:
            print(f"{plan_summary(plan)}; backend {backend}")
            print(plan_table(plan))
        repeated = duplicate_ids(plan, spec.input).describe()
        if repeated:
            print(f"plan: {repeated}", file=sys.stderr)
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


# Shards listed by `plan` before "... N more": enough to see the pattern on one screen.
_PLAN_ROWS_SHOWN = 20


def plan_table(plan: Plan) -> str:
    """The shards as a table a person reads: id, rows, files, partition."""
    lines = [f"{'shard':<8} {'rows':>9} {'files':>5}  partition"]
    for shard in plan.shards[:_PLAN_ROWS_SHOWN]:
        files = len({s.path for s in shard.slices})
        partition = shard.slices[0].partition if shard.slices else {}
        where = ", ".join(f"{k}={v}" for k, v in sorted(partition.items())) or "-"
        lines.append(f"{shard.shard_id:<8} {shard.num_rows:>9,} {files:>5}  {where}")
    hidden = len(plan.shards) - _PLAN_ROWS_SHOWN
    if hidden > 0:
        lines.append(f"... {hidden:,} more shard(s); `batchmt plan --json` lists every one")
    return "\n".join(lines)


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
    if not fs.isdir(root):
        absolute = str(Path(root).absolute())
        where = f" ({absolute})" if "://" not in args.output and absolute != args.output else ""
        problem = "is a file, not" if fs.exists(root) else "does not exist; it is not"
        raise StorageError(
            f"{args.output}{where} {problem} a job's output folder; pass the output.path of "
            "a job's config"
        )
    view = open_output(args.output, options)
    if view.kind != "parquet":  # every job (or input.since run) that wrote the output
        statuses = [run.status().to_dict() for run in view.runs]
        if args.json:
            print_json({"table": args.output, "jobs": statuses})
        else:
            reports = [status_report(run.layout.root, s) for run, s in zip(view.runs, statuses)]
            print("\n".join(reports))
        return 0
    status = view.runs[0].status().to_dict()
    if not status.get("success"):
        status["driver"] = driver_state(fs, root)
    if args.json:
        print_json(status)
    else:
        print(status_report(args.output, status))
    return 0


def driver_state(fs: Any, root: str) -> dict[str, Any] | None:
    """Who holds the output's lease (pipeline/outputs/lease.py), for `status` of a job that
    has not finished: alive (heartbeat within its TTL) or stopped; None when never leased."""
    import time

    lease = current_lease(fs, root)
    if lease is None:
        return None
    now = time.time()
    return {
        "alive": lease.live(now),
        "released": lease.released,
        "run_id": lease.run_id,
        "host": lease.host,
        "pid": lease.pid,
        "heartbeat_s_ago": round(max(0.0, now - lease.heartbeat_at), 1),
    }


def cmd_verify(spec: JobSpec, *, as_json: bool = False) -> int:
    job = OutputLayout.for_job(spec)  # the job's own folder, partitions from its manifest
    if spec.input.since is not None:
        # input.since runs: all of them together (a table: its live files) against the input now.
        view = open_output(spec.output.path, spec.output.storage_options)
        report = verify_runs(view, spec.input).to_dict()
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
