"""The earlier successful runs of a job under an output, read back (reads only).

A run's bookkeeping is a `_manifest.json` (the frozen plan: `source`, `inputs`) and a
`_SUCCESS` (a JSON summary written last: `finished_at`, `run_id`, `rows_in`, `job_name`).
They sit at the output root (a plain Parquet output) or in `<output>/_batchmt/<job key>/`
(a table output, one folder per job key = job name + spec fingerprint; with input.since,
one per increment, for a plain Parquet output too). Only a folder whose
`_SUCCESS` belongs to the manifest beside it is a successful run: a run without `_SUCCESS`
(killed, running) or whose manifest a later run already replaced is not, and junk (foreign
folders, unreadable JSON) is skipped with a warning, never trusted.

`previous_state` turns the last successful run that read the same input into where
`input.since: last` starts (pipeline/inputs/sources/increments.py).
"""

from __future__ import annotations

import datetime
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import fsspec

from batchmt.pipeline.inputs.corpus import detect_format
from batchmt.pipeline.inputs.sources.increments import (
    SINCE,
    PreviousState,
    decode_seen,
    digests_of_inputs,
)
from batchmt.pipeline.inputs.sources.listing import modified_at
from batchmt.pipeline.spec import InputSpec
from batchmt.pipeline.storage.fs import join, list_names, read_json

log = logging.getLogger(__name__)

# A table output's job folders (pipeline/outputs/commit.py TABLE_JOBS_DIR).
JOBS_DIR = "_batchmt"
_MANIFEST, _SUCCESS = "_manifest.json", "_SUCCESS"


@dataclass(frozen=True)
class RunRecord:
    """One successful run, as its manifest and `_SUCCESS` tell it."""

    folder: str  # where its manifest and _SUCCESS are
    job_key: str  # its folder's name under _batchmt/ ("" at the output root)
    run_id: str  # "" for a _SUCCESS written before runs had ids
    finished_at: datetime.datetime
    rows: int | None  # rows it planned (`rows_in`)
    input_path: str  # the plan's input (path, or a catalog table's name)
    source: dict[str, Any]  # the plan's source: format, version, filter, since
    # Parquet: the files it saw (path + identity digests); frozenset() for tables.
    seen: frozenset[bytes] = field(default_factory=frozenset)

    @property
    def input_format(self) -> str:
        return str(self.source.get("format") or "parquet")

    @property
    def version(self) -> int | None:
        """The Delta version / Iceberg snapshot id it read up to (None for Parquet)."""
        value = self.source.get("version")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def _name_prefix(job_name: str) -> str:
    """A job key's name part, spelled as pipeline/outputs/commit.py's job_key spells it."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", job_name).strip("-.")[:48] or "job"


def successful_runs(
    fs: fsspec.AbstractFileSystem, output_root: str, job_name: str
) -> list[RunRecord]:
    """The successful runs of `job_name` under the output, oldest first (by finish time)."""
    root = output_root.rstrip("/")
    folders = [(root, "")]
    jobs = join(root, JOBS_DIR)
    prefix = f"{_name_prefix(job_name)}-"
    folders += [(join(jobs, n), n) for n in list_names(fs, jobs) if n.startswith(prefix)]
    runs = []
    for folder, key in folders:
        record = _read_run(fs, folder, key, job_name)
        if record is not None:
            runs.append(record)
    return sorted(runs, key=lambda r: (r.finished_at, r.job_key, r.run_id))


def _read_run(
    fs: fsspec.AbstractFileSystem, folder: str, key: str, job_name: str
) -> RunRecord | None:
    try:
        success = read_json(fs, join(folder, _SUCCESS))
        if success is None:
            return None  # never finished (or still running): not a successful run
        manifest = read_json(fs, join(folder, _MANIFEST))
    except ValueError as exc:  # damaged JSON: someone else wrote here
        log.warning("skipping %s: %s", folder, exc)
        return None
    if not isinstance(success, dict) or not isinstance(manifest, dict):
        log.warning("skipping %s: _SUCCESS or _manifest.json missing or not a JSON object", folder)
        return None
    if success.get("job_name", job_name) != job_name:
        return None  # another job's output
    try:
        return _record(fs, folder, key, success, manifest)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("skipping %s: not a batchmt run (%s)", folder, exc)
        return None


def _record(
    fs: fsspec.AbstractFileSystem,
    folder: str,
    key: str,
    success: dict[str, Any],
    manifest: dict[str, Any],
) -> RunRecord | None:
    run_id = str(success.get("run_id") or "")
    runs = manifest.get("runs")
    if run_id and isinstance(runs, list) and runs and str(runs[-1]) != run_id:
        # A later run took the folder over (its manifest) and has not finished: the
        # _SUCCESS describes another plan than the one beside it.
        log.info("skipping %s: its manifest belongs to run %s, not %s", folder, runs[-1], run_id)
        return None
    plan = manifest["plan"]
    source = dict(plan.get("source") or {})
    inputs = plan.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise TypeError("plan.inputs is not an object")
    seen: frozenset[bytes] = frozenset()
    if str(source.get("format") or "parquet") == "parquet":
        since = source.get(SINCE)
        stored = since.get("seen") if isinstance(since, dict) else None
        # An incremental run saw every live file; a full one the files it read.
        seen = decode_seen(stored) if stored is not None else digests_of_inputs(inputs)
    rows = success.get("rows_in")
    return RunRecord(
        folder=folder,
        job_key=key,
        run_id=run_id,
        finished_at=_finished_at(fs, folder, success),
        rows=rows if isinstance(rows, int) else None,
        input_path=str(plan.get("input_path", "")),
        source=source,
        seen=seen,
    )


def _finished_at(
    fs: fsspec.AbstractFileSystem, folder: str, success: dict[str, Any]
) -> datetime.datetime:
    text = success.get("finished_at")
    if isinstance(text, str):
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)
    # No time in it: when the marker was written.
    written = modified_at(fs.info(join(folder, _SUCCESS)))
    if written is None:
        raise ValueError("_SUCCESS has no finished_at")
    return datetime.datetime.fromtimestamp(written, tz=datetime.timezone.utc)


def _same_input(run: RunRecord, input_spec: InputSpec, kind: str) -> bool:
    """Whether `run` read the input this spec reads, the same way: same format, same path
    (or catalog table), same filter. A run with another filter covered other files."""
    where = (input_spec.path or input_spec.table or "").rstrip("/")
    return (
        run.input_format == kind
        and run.input_path.rstrip("/") == where
        and run.source.get("filter") == input_spec.filter
    )


def _since_mode(run: RunRecord) -> str | None:
    since = run.source.get(SINCE)
    return str(since.get("mode")) if isinstance(since, dict) else None


def previous_state(runs: list[RunRecord], input_spec: InputSpec) -> PreviousState | None:
    """Where `input.since: last` starts: the input as the last successful run of the same
    input planned it (`runs` oldest first, as successful_runs gives them); None when there
    is none (the first run reads everything)."""
    kind = detect_format(input_spec)
    matching = [r for r in runs if _same_input(r, input_spec, kind)]
    if len(matching) < len(runs):
        log.info(
            "input.since last: %d of %d earlier run(s) read another input, format or filter; "
            "not counted",
            len(runs) - len(matching),
            len(runs),
        )
    # A run from an explicit version or time that planned nothing translated nothing: it
    # never becomes the start (a `since` past the input's newest file once recorded every
    # file as seen and hid them from every later run). An empty `since: last` run counts:
    # its state is the one it started from, and the next run must not reuse its folder.
    planned = [r for r in matching if r.rows != 0 or _since_mode(r) == "last"]
    if len(planned) < len(matching):
        log.info(
            "input.since last: %d earlier run(s) from an explicit version or time planned no "
            "rows; not counted",
            len(matching) - len(planned),
        )
    if not planned:
        return None
    last = planned[-1]
    summary: dict[str, Any] = {
        "run_id": last.run_id,
        "job_key": last.job_key,
        "finished_at": last.finished_at.isoformat(),
    }
    if kind == "parquet":
        return PreviousState(seen=last.seen, summary={**summary, "files_seen": len(last.seen)})
    return PreviousState(version=last.version, summary={**summary, "version": last.version})
