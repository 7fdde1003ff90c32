"""One way to open an output: its runs, typed, whatever wrote them.

An output holds one or more runs, each a folder with a manifest, completion markers,
quality files and, once finished, `_SUCCESS` (records/):
- a plain Parquet job: one run at the output's root;
- a Parquet output of `input.since` runs: one folder per increment under `_batchmt/`, their
  data files side by side in the shared `data/`;
- a Delta or Iceberg table: one folder per job (and increment) under `<table>/_batchmt/`,
  beside the table's own log; the table's rows are what its log holds now.

`open_output` finds them, `OutputView.runs` lists them (finished ones by finish time, then
unfinished), and `OutputView.published_files` says which data files a reader reads: the
counted shards of every run for Parquet, the table's live files for Delta and Iceberg.
`batchmt status`, `report`, `verify` and `read_output` all read an output through here.

`successful_runs`/`previous_state` turn the last successful run that read the same input
into where `input.since: last` starts (pipeline/inputs/sources/increments.py). A folder whose
`_SUCCESS` does not belong to the manifest beside it (a later run took it over) is no
successful run; junk (foreign folders, unreadable JSON) is skipped with a warning.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import fsspec

from batchmt.pipeline.errors import BatchmtError
from batchmt.pipeline.inputs.corpus import detect_format
from batchmt.pipeline.inputs.sources.increments import (
    SINCE,
    PreviousState,
    decode_seen,
    digests_of_inputs,
)
from batchmt.pipeline.inputs.sources.listing import modified_at
from batchmt.pipeline.outputs.layout import (
    OutputLayout,
    job_name_part,
    load_manifest,
    table_job_roots,
)
from batchmt.pipeline.outputs.records.manifest import Manifest
from batchmt.pipeline.outputs.records.markers import counted_markers
from batchmt.pipeline.outputs.records.status import JobStatus, job_status, read_success
from batchmt.pipeline.outputs.records.success import Success
from batchmt.pipeline.spec import InputSpec
from batchmt.pipeline.storage.fs import join, open_fs

log = logging.getLogger(__name__)

OutputKind = Literal["parquet", "runs", "delta", "iceberg"]


@dataclass(frozen=True)
class Run:
    """One run's folder, opened: its layout, manifest and `_SUCCESS` (None when absent)."""

    layout: OutputLayout
    key: str  # its folder's name under _batchmt/ ("" at the output root)
    manifest: Manifest | None
    success: Success | None

    @property
    def finished(self) -> bool:
        return self.success is not None

    def status(self) -> JobStatus:
        return job_status(self.layout)

    def completed(self) -> list[str]:
        """Ids of the shards whose markers count (a fenced-out driver's never do)."""
        return sorted(counted_markers(self.layout))


def _open_run(fs: fsspec.AbstractFileSystem, folder: str, key: str) -> Run:
    layout = OutputLayout.read(fs, folder)  # partitions from the manifest, or refuses it
    return Run(layout, key, load_manifest(layout), read_success(layout))


@dataclass(frozen=True)
class PublishedFile:
    """A data file a reader of the output reads, with the partition values its path holds."""

    path: str
    partition: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputView:
    fs: fsspec.AbstractFileSystem
    url: str  # the output as the user named it (a table's location for its readers)
    root: str  # inside `fs`
    kind: OutputKind
    runs: list[Run]
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_table(self) -> bool:
        return self.kind in ("delta", "iceberg")

    @property
    def data_dir(self) -> str:
        """Where hive partition folders start (the table, or the Parquet `data/` folder)."""
        return self.root if self.is_table else join(self.root, "data")

    def published_files(self) -> list[PublishedFile]:
        """What a reader reads: every run's counted shards for Parquet (input.since runs
        hold each id once across them); for a table, the files its log holds now."""
        if self.is_table:
            return self._table_files()
        return [
            PublishedFile(run.layout.data(sid), dict(run.layout.partitions.get(sid, {})))
            for run in self.runs
            for sid in run.completed()
        ]

    def _table_files(self) -> list[PublishedFile]:
        from batchmt.pipeline.inputs.plan import list_input

        # Before the first commit there is no table yet (its log is made by that commit).
        log_glob = "_delta_log/*.json" if self.kind == "delta" else "metadata/*.metadata.json"
        self.fs.invalidate_cache(self.root)  # a listing cached before the commit is stale
        if not self.fs.glob(join(self.root, log_glob)):
            return []
        kind: Literal["delta", "iceberg"] = "delta" if self.kind == "delta" else "iceberg"
        spec = InputSpec(path=self.url, format=kind, storage_options=self.storage_options)
        return [PublishedFile(f.path, f.partition) for f in list_input(spec).files]


def open_output(url: str, storage_options: dict[str, Any] | None = None) -> OutputView:
    """The output at `url`, its runs opened (an empty or missing output has one run, empty)."""
    options = dict(storage_options or {})
    fs, root = open_fs(url, options)
    root = root.rstrip("/")
    top = OutputLayout.read(fs, root)
    if not fs.exists(top.manifest):
        opened = [
            _open_run(fs, folder, folder.rsplit("/", 1)[-1]) for folder in table_job_roots(fs, root)
        ]
        if opened:
            kind: OutputKind = "runs"
            if opened[0].layout.is_table:
                kind = "delta" if opened[0].layout.table_format == "delta" else "iceberg"
            return OutputView(fs, url, root, kind, _in_order(opened), options)
    return OutputView(fs, url, root, "parquet", [_open_run(fs, root, "")], options)


def _in_order(runs: list[Run]) -> list[Run]:
    """Finished runs oldest first (input.since runs are named by their increment, not their
    time), then the unfinished ones by name."""
    far = datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)

    def when(run: Run) -> datetime.datetime:
        try:
            return (run.success.finished_at if run.success else None) or far
        except ValueError:
            return far

    return sorted(runs, key=lambda r: (when(r), r.key))


# ----------------------------------------------------------------------------------------
# input.since: last


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


def successful_runs(
    fs: fsspec.AbstractFileSystem, output_root: str, job_name: str
) -> list[RunRecord]:
    """The successful runs of `job_name` under the output, oldest first (by finish time)."""
    root = output_root.rstrip("/")
    prefix = f"{job_name_part(job_name)}-"
    folders = [(root, "")]
    folders += [
        (folder, folder.rsplit("/", 1)[-1])
        for folder in table_job_roots(fs, root)
        if folder.rsplit("/", 1)[-1].startswith(prefix)
    ]
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
        run = _open_run(fs, folder, key)
        if run.success is None:
            return None  # never finished (or still running): not a successful run
        if run.manifest is None:
            raise ValueError("_SUCCESS without a _manifest.json")
        if (run.success.job_name or job_name) != job_name:
            return None  # another job's output
        return _record(fs, run)
    except (BatchmtError, KeyError, TypeError, ValueError) as exc:  # someone else wrote here
        log.warning("skipping %s: not a batchmt run (%s)", folder, exc)
        return None


def _record(fs: fsspec.AbstractFileSystem, run: Run) -> RunRecord | None:
    assert run.success is not None and run.manifest is not None
    folder, run_id, current = run.layout.root, run.success.run_id, run.manifest.current_run
    if run_id and current is not None and current != run_id:
        # A later run took the folder over (its manifest) and has not finished: the
        # _SUCCESS describes another plan than the one beside it.
        log.info("skipping %s: its manifest belongs to run %s, not %s", folder, current, run_id)
        return None
    plan = run.manifest.plan
    source = dict(plan.source)
    seen: frozenset[bytes] = frozenset()
    if str(source.get("format") or "parquet") == "parquet":
        since = source.get(SINCE)
        stored = since.get("seen") if isinstance(since, dict) else None
        # An incremental run saw every live file; a full one the files it read.
        seen = decode_seen(stored) if stored is not None else digests_of_inputs(plan.inputs)
    return RunRecord(
        folder=folder,
        job_key=run.key,
        run_id=run_id,
        finished_at=run.success.finished_at or _written_at(fs, run.layout),
        rows=run.success.rows_in,
        input_path=plan.input_path,
        source=source,
        seen=seen,
    )


def _written_at(fs: fsspec.AbstractFileSystem, layout: OutputLayout) -> datetime.datetime:
    """A _SUCCESS with no time in it: when the marker was written."""
    written = modified_at(fs.info(layout.success))
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
