"""The output layout and commit protocol: what a finished job, shard, or resume looks like.

    <output>/_manifest.json          frozen plan + spec fingerprint (first thing written)
    <output>/data/part-<shard>.parquet   one file per shard, published whole
    <output>/quality/<shard>.json     the shard's quality sample
    <output>/_completions/<shard>     the shard's counts (results.ShardResult), written LAST
    <output>/_SUCCESS                 JSON summary once every shard is complete
    <output>/_lease/<generation>.json  which driver holds the output (pipeline/outputs/lease.py)

With output partitions (`Plan.output_partitions`) a shard's file sits in its hive folder,
`data/<col>=<value>/part-<shard>.parquet`, without the partition columns (they are the path).

A Delta or Iceberg output (`output.format`) is a table at `output.path`: the job keeps the
files above under `<table>/_batchmt/<job key>/` (job key = job name + spec fingerprint, so
every job spec has its own folder, lease and resume), and writes its data files into the
table's partition folders as `<col>=<value>/part-<job key>-<shard>.parquet`. They become
table rows only in the one table commit at the end (pipeline/outputs/table_commit.py).

A plain Parquet output with `input.since` holds one run per increment: each keeps its
bookkeeping in `<output>/_batchmt/<job key>-<increment key>/` (`runs_root` = the output) and
its data in the shared `<output>/data/[<partition folders>/]part-<job key>-<shard>.parquet`,
so runs never overwrite each other (pipeline/outputs/supersede.py keeps each id once across them).

Keys depend only on the shard id, so a retried or duplicated attempt overwrites instead of
duplicating; one listing of `_completions/` tells a rerun what is left.

Fencing: the manifest lists the runs (driver leases) that worked on it. A marker counts when
the current run wrote it, or when the current run found it at its start (`carried`): a
marker that a driver writes after it lost the lease to a newer run never counts.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from batchmt.pipeline import status as row_status
from batchmt.pipeline.inputs.shards import SHARD_ID_PATTERN, Plan, Shard
from batchmt.pipeline.inputs.sources.increments import readable_source
from batchmt.pipeline.outputs.lease import GENERATION_ENV, LeaseRecord, check_fence
from batchmt.pipeline.outputs.partitions import (
    NULL_PARTITION,
    hive_path,
    parse_hive_path,
    shard_partition,
)
from batchmt.pipeline.outputs.resume_checks import InputChangedError, ManifestError, check_resumable
from batchmt.pipeline.quality.samples import merge_quality
from batchmt.pipeline.results import QeCounts, ShardResult
from batchmt.pipeline.spec import JobSpec, OutputSpec
from batchmt.pipeline.storage.fs import (
    join,
    list_names,
    open_fs,
    publish,
    read_json,
    remove,
    write_json,
)

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
_READ_THREADS = 16  # completion/quality files are tiny: latency-bound on S3
# The run id of markers written before markers carried one (and of bare API callers).
LEGACY_RUN = "legacy"
# A table output's bookkeeping folder, beside the table's own (`_delta_log/`, `metadata/`):
# table readers skip it, as they skip every file the table's log does not name.
TABLE_JOBS_DIR = "_batchmt"
# The driver hands its actors where shard files go, with the lease generation (JSON:
# {"partition_by": [...], "job_key": "..."}): a worker then files each shard under the
# partition the frozen plan says, in the job's folder of a table output.
LAYOUT_ENV = "BATCHMT_OUTPUT_LAYOUT"
# A Parquet output's input.since run: how many older rows it replaced (outputs/supersede.py),
# kept so that a rerun after a kill before _SUCCESS still reports them.
REPLACED_FILE = "_replaced.json"


class OutputConflictError(RuntimeError):
    """The output folder belongs to a different job spec."""


@dataclass(frozen=True)
class OutputLayout:
    """Where each piece of a job's output lives. Build it inside each process (workers
    included) with `OutputLayout.open(output_spec)` / `for_job(spec)`: filesystems are not
    sent to actors.

    `root` holds the job's bookkeeping (manifest, markers, quality, lease, _SUCCESS); data
    files go under `data_dir`, in the hive folder of their partition (`partition_by`).
    """

    fs: fsspec.AbstractFileSystem
    root: str
    # Table outputs: the table's location, and the job key that tags this job's files.
    table_root: str = ""
    job_key: str = ""
    table_format: str = ""  # "delta" | "iceberg" for a table output
    # A Parquet output of input.since runs: the output's path (its shared data/ folder);
    # `root` is then this run's folder under _batchmt/.
    runs_root: str = ""
    partition_by: tuple[str, ...] = ()
    # Read side: {shard id: partition} from the manifest (see `OutputLayout.read`).
    partitions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def open(cls, output: OutputSpec, job_key: str = "") -> OutputLayout:
        fs, root = open_fs(output.path, output.storage_options)
        root = root.rstrip("/")
        if output.format == "parquet":
            if job_key:
                return cls(fs, join(root, TABLE_JOBS_DIR, job_key), job_key=job_key, runs_root=root)
            return cls(fs, root)
        if not job_key:
            raise ValueError("a table output's layout needs the job key: use for_job(spec)")
        return cls(
            fs,
            join(root, TABLE_JOBS_DIR, job_key),
            table_root=root,
            job_key=job_key,
            table_format=output.format,
        )

    @classmethod
    def for_job(
        cls, spec: JobSpec, partition_by: Sequence[str] = (), increment: str = ""
    ) -> OutputLayout:
        """The layout of this job spec's output (its own folder in a table output; one per
        increment with input.since)."""
        table = spec.output.format != "parquet"
        key = job_key(spec, increment) if table or increment else ""
        return replace(cls.open(spec.output, key), partition_by=tuple(partition_by))

    @classmethod
    def for_worker(cls, spec: JobSpec) -> OutputLayout:
        """Inside an actor: the job's layout as its driver handed it over (LAYOUT_ENV);
        without a driver, output.partition_by and the spec's own job key."""
        handed = json.loads(os.environ.get(LAYOUT_ENV) or "{}")
        columns = handed.get("partition_by", spec.output.partition_by or [])
        layout = cls.for_job(spec, [str(c) for c in columns])
        key = str(handed.get("job_key") or "")
        if key and key != layout.job_key:
            layout = replace(cls.open(spec.output, key), partition_by=layout.partition_by)
        return layout

    @classmethod
    def read(cls, fs: fsspec.AbstractFileSystem, root: str) -> OutputLayout:
        """A finished or running job's output for readers (status, read_output, verify,
        report): partitions come from its manifest, a table's location from the path."""
        root = root.rstrip("/")
        layout = cls(fs, root)
        parent, _, key = root.rpartition("/")
        table_root, _, jobs_dir = parent.rpartition("/")
        if jobs_dir == TABLE_JOBS_DIR and key:
            if fs.exists(join(table_root, "_delta_log")):
                layout = cls(fs, root, table_root=table_root, job_key=key, table_format="delta")
            elif not fs.exists(join(table_root, "metadata")) and fs.exists(
                join(table_root, "data")
            ):  # a Parquet output's run (input.since): the runs share data/
                layout = cls(fs, root, job_key=key, runs_root=table_root)
            else:  # Iceberg (before its first commit too: no metadata/, no data/ yet)
                layout = cls(fs, root, table_root=table_root, job_key=key, table_format="iceberg")
        manifest = load_manifest(layout)
        if manifest is None or not manifest.plan.output_partitions:
            return layout
        columns = tuple(manifest.plan.output_partitions)
        partitions = {s.shard_id: shard_partition(s, columns) for s in manifest.plan.shards}
        return replace(layout, partition_by=columns, partitions=partitions)

    @property
    def is_table(self) -> bool:
        return bool(self.table_root)

    @property
    def manifest(self) -> str:
        return join(self.root, "_manifest.json")

    @property
    def success(self) -> str:
        return join(self.root, "_SUCCESS")

    @property
    def data_dir(self) -> str:
        return self.table_root or join(self.runs_root or self.root, "data")

    @property
    def quality_dir(self) -> str:
        return join(self.root, "quality")

    @property
    def completions_dir(self) -> str:
        return join(self.root, "_completions")

    def partition_of(self, shard: Shard) -> dict[str, str]:
        """The shard's output partition ({} for an unpartitioned output)."""
        return shard_partition(shard, self.partition_by)

    def data_name(self, shard_id: str) -> str:
        tag = f"{self.job_key}-" if self.job_key else ""
        return f"part-{tag}{_key(shard_id)}.parquet"

    def data_relpath(self, shard_id: str, partition: Mapping[str, str] | None = None) -> str:
        """The data file's path under `data_dir` (in its partition's hive folder)."""
        values = self.partitions.get(shard_id, {}) if partition is None else partition
        folder = hive_path(values)
        name = self.data_name(shard_id)
        return f"{folder}/{name}" if folder else name

    def data(self, shard_id: str, partition: Mapping[str, str] | None = None) -> str:
        return join(self.data_dir, self.data_relpath(shard_id, partition))

    def quality(self, shard_id: str) -> str:
        return join(self.quality_dir, f"{_key(shard_id)}.json")

    def completion(self, shard_id: str) -> str:
        return join(self.completions_dir, _key(shard_id))


def job_key(spec: JobSpec, increment: str = "") -> str:
    """A table output's name for this job spec: its name (made path-safe) and fingerprint.

    A rerun of the same spec resumes its folder; a backfill or tomorrow's run (another
    input filter or path: another fingerprint) gets its own. With input.since the same spec
    runs again and again: `increment` (sources/increments.py increment_key: where the
    increment starts) gives each increment its own folder and commit, and a killed run's
    rerun (the same start) its old one.
    """
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.job_name).strip("-.")[:48] or "job"
    return f"{name}-{spec.fingerprint()}" + (f"-{increment}" if increment else "")


def data_files_found(layout: OutputLayout) -> dict[str, str]:
    """{shard id: data file} for every data file of this job present in storage (what any
    Parquet reader of the folder sees), whatever its partition folder."""
    prefix, suffix = f"part-{layout.job_key}-" if layout.job_key else "part-", ".parquet"
    out = {}
    layout.fs.invalidate_cache(layout.data_dir)
    try:
        found = layout.fs.find(layout.data_dir) if layout.partition_by else None
    except FileNotFoundError:
        found = []
    if found is None:  # unpartitioned: one listing of the folder, as always
        names = list_names(layout.fs, layout.data_dir)
        found = [join(layout.data_dir, n) for n in names]
    base = layout.data_dir.rstrip("/") + "/"
    for path in found:
        relpath = path[len(base) :] if path.startswith(base) else path.rsplit("/", 1)[-1]
        name = relpath.rsplit("/", 1)[-1]
        shard_id = name.removeprefix(prefix).removesuffix(suffix)
        planned_name = name.startswith(prefix) and name.endswith(suffix)
        if planned_name and SHARD_ID_PATTERN.fullmatch(shard_id):
            out[shard_id] = layout.data(shard_id, parse_hive_path(relpath))
    return out


def _key(shard_id: str) -> str:
    """The shard id as a key part; anything but digits could name a path elsewhere."""
    if not SHARD_ID_PATTERN.fullmatch(shard_id):
        raise ValueError(f"shard id {shard_id!r} is not a planned id (digits only)")
    return shard_id


def _fence(layout: OutputLayout) -> None:
    """Inside a worker: refuse to publish once this job's driver lost the output's lease.

    The driver hands its lease generation to the actors it starts (GENERATION_ENV); bare
    callers (tests, tools) have none and are not fenced.
    """
    generation = os.environ.get(GENERATION_ENV)
    if generation:
        check_fence(layout.fs, layout.root, int(generation))


# ----------------------------------------------------------------------------------------
# Per-shard writes (worker side, then driver marks completion)


def write_shard_data(
    layout: OutputLayout,
    shard_id: str,
    table: pa.Table,
    partition: Mapping[str, str] | None = None,
) -> str:
    """Publish the shard's rows as one Parquet file; return its path.

    `partition`: the shard's output partition (`layout.partition_of(shard)`). Its columns
    are the folder names, so they leave the file (hive and Delta keep them in the path);
    Iceberg infers a file's partition from the file's own column statistics, so an Iceberg
    output keeps them.
    """
    path = layout.data(shard_id, partition or {})
    if partition and not _keeps_partition_columns(layout):
        table = table.drop_columns([c for c in partition if c in table.column_names])
    elif partition:  # Iceberg: a null partition's column is in no input file; it is null
        for column, value in partition.items():
            if column not in table.column_names and value == NULL_PARTITION:
                table = table.append_column(column, pa.nulls(table.num_rows, pa.string()))
    _fence(layout)
    # Serialised to memory first: a failed upload is then retried from the bytes, and the
    # parquet writer never sees a half-open remote file.
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    with publish(layout.fs, path) as f:
        f.write(buffer.getbuffer())
    return path


def _keeps_partition_columns(layout: OutputLayout) -> bool:
    return layout.is_table and layout.table_format == "iceberg"


def write_quality(layout: OutputLayout, shard_id: str, obj: dict[str, Any]) -> None:
    path = layout.quality(shard_id)
    _fence(layout)
    write_json(layout.fs, path, obj)


def mark_complete(
    layout: OutputLayout, result: ShardResult, lease: LeaseRecord | None = None
) -> None:
    """Record the shard as done. Call only after its data and quality files are closed.

    The marker carries the run id and lease generation of the driver that wrote it: see
    the module docstring for which markers count.
    """
    body = result.to_dict()
    if lease is not None:
        body.update(run_id=lease.run_id, lease_generation=lease.generation)
    write_json(layout.fs, layout.completion(result.shard_id), body)


def completed_shard_ids(layout: OutputLayout) -> set[str]:
    """Ids of completed shards from one listing (cheap: no reads)."""
    return set(list_names(layout.fs, layout.completions_dir))


def _read_many(layout: OutputLayout, paths: dict[str, str]) -> dict[str, Any]:
    def read(item: tuple[str, str]) -> tuple[str, Any]:
        key, path = item
        try:
            return key, read_json(layout.fs, path)
        except ValueError as exc:
            log.warning("ignoring %s: %s", path, exc)
            return key, None

    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        pairs = list(pool.map(read, sorted(paths.items())))
    return {key: value for key, value in pairs if value is not None}


def completed_shards(layout: OutputLayout) -> dict[str, ShardResult]:
    """{shard_id: its result} for every completed shard that counts; {} when none.

    With a manifest, only planned shards count, and only markers of its current run or
    carried over from an earlier run (a fenced-out driver's late markers never do).
    """
    return {sid: result for sid, (result, _run) in _counted_markers(layout).items()}


def _counted_markers(layout: OutputLayout) -> dict[str, tuple[ShardResult, str]]:
    """{shard_id: (result, run id that wrote it)} for the markers that count."""
    manifest = load_manifest(layout)
    # A stray name in the folder is no marker (and must never become a path).
    ids = {sid for sid in completed_shard_ids(layout) if SHARD_ID_PATTERN.fullmatch(sid)}
    if manifest is not None:
        planned = {s.shard_id for s in manifest.plan.shards}
        ids = {sid for sid in ids if sid in planned}
    bodies = _read_many(layout, {sid: layout.completion(sid) for sid in ids})
    done = {}
    for sid, body in bodies.items():
        if not isinstance(body, dict):
            log.warning("ignoring %s: not a JSON object", layout.completion(sid))
            continue
        run_id = str(body.get("run_id", LEGACY_RUN))
        if manifest is not None and not manifest.counts(sid, run_id):
            log.warning("ignoring %s: written by run %s, which lost the output", sid, run_id)
            continue
        # Markers of older versions may lack the id: the file name is the shard's.
        done[sid] = (ShardResult.from_dict({"shard_id": sid, **body}), run_id)
    return done


# ----------------------------------------------------------------------------------------
# Starting, resuming, finishing a job (driver side)


class Preparation(NamedTuple):
    mode: Literal["new", "resume"]
    plan: Plan  # the plan to run: the stored one when resuming


def _clear(layout: OutputLayout) -> None:
    """Delete only what a job writes; anything else the user keeps under the path stays.

    A table output's data folder is the table: its files stay (uncommitted ones of this job
    are rewritten under the same names; committed ones are the table's).
    """
    folders = [layout.completions_dir, layout.quality_dir]
    if layout.runs_root:  # the data folder is shared with the other runs: only ours go
        for path in data_files_found(layout).values():
            remove(layout.fs, path)
    elif not layout.is_table:
        folders.append(layout.data_dir)
    for folder in folders:
        remove(layout.fs, folder, recursive=True)
    for path in (layout.success, layout.manifest, join(layout.root, REPLACED_FILE)):
        remove(layout.fs, path)


@dataclass(frozen=True)
class Manifest:
    spec_fingerprint: str
    plan: Plan
    # Run ids in lease order, the last one current; None for manifests of bare API callers
    # and older versions (then every marker counts).
    runs: list[str] | None = None
    # {shard_id: run_id} of earlier runs' markers the current run found at its start.
    carried: dict[str, str] = field(default_factory=dict)

    def counts(self, shard_id: str, run_id: str) -> bool:
        """Whether a marker of `run_id` for `shard_id` is output (module docstring)."""
        if self.runs is None:
            return True
        if self.runs and run_id == self.runs[-1]:
            return True
        return self.carried.get(shard_id) == run_id

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": MANIFEST_VERSION,
            "spec_fingerprint": self.spec_fingerprint,
            "plan": self.plan.to_dict(),
        }
        if self.runs is not None:
            data.update(runs=self.runs, carried=self.carried)
        return data


def _write_manifest(layout: OutputLayout, manifest: Manifest) -> None:
    write_json(layout.fs, layout.manifest, manifest.to_dict())


def load_manifest(layout: OutputLayout) -> Manifest | None:
    """`_manifest.json` parsed, or None when absent."""
    data = read_json(layout.fs, layout.manifest)
    if data is None:
        return None
    try:
        runs = data.get("runs")
        return Manifest(
            str(data["spec_fingerprint"]),
            Plan.from_dict(data["plan"]),
            [str(r) for r in runs] if isinstance(runs, list) else None,
            {str(k): str(v) for k, v in (data.get("carried") or {}).items()},
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise OutputConflictError(
            f"{layout.manifest} is not a batchmt manifest ({exc}); use --set "
            "output.overwrite=true to start over, or choose another output.path"
        ) from None


def read_manifest(layout: OutputLayout) -> tuple[str, Plan] | None:
    """(spec fingerprint, frozen plan) from `_manifest.json`, or None when absent."""
    manifest = load_manifest(layout)
    return (manifest.spec_fingerprint, manifest.plan) if manifest else None


def prepare_output(
    layout: OutputLayout,
    plan: Plan,
    spec_fingerprint: str,
    overwrite: bool = False,
    lease: LeaseRecord | None = None,
) -> Preparation:
    """Claim the output for this job: a fresh start, a resume, or a refusal.

    Call it holding the output's lease (`lease`; bare API callers and tests pass none).
    Resuming keeps the manifest's plan (shard ids must keep meaning the same rows) after
    checking it (pipeline/outputs/resume_checks.py): a tampered manifest or a rewritten input file
    raises OutputConflictError, and so does a different spec.
    """
    runs = [lease.run_id] if lease is not None else None
    if overwrite:
        _clear(layout)
        _write_manifest(layout, Manifest(spec_fingerprint, plan, runs))
        return Preparation("new", plan)
    stored = load_manifest(layout)
    if stored is None:
        _write_manifest(layout, Manifest(spec_fingerprint, plan, runs))
        return Preparation("new", plan)
    stored_fingerprint, stored_plan = stored.spec_fingerprint, stored.plan
    if stored_fingerprint != spec_fingerprint:
        raise OutputConflictError(
            f"output {layout.root} was written by a different job spec (fingerprint "
            f"{stored_fingerprint}, this spec {spec_fingerprint}); use --set "
            "output.overwrite=true to start over, or choose another output.path"
        )
    try:
        check_resumable(stored_plan, plan, layout.manifest)
    except (ManifestError, InputChangedError) as exc:
        raise OutputConflictError(str(exc)) from None
    if stored_plan.fingerprint != plan.fingerprint:
        log.warning(
            "input %s has files (or a plan) the manifest %s does not (plan %s, now %s); "
            "resuming the frozen plan, new input rows are not picked up",
            plan.input_path,
            layout.manifest,
            stored_plan.fingerprint,
            plan.fingerprint,
        )
    if lease is not None:
        # Markers that count now are carried into this run; anything an earlier run
        # writes from here on (a driver that lost the lease) does not count.
        carried = {sid: run for sid, (_result, run) in _counted_markers(layout).items()}
        previous = stored.runs if stored.runs is not None else [LEGACY_RUN]
        _write_manifest(
            layout,
            Manifest(spec_fingerprint, stored_plan, [*previous, lease.run_id], carried),
        )
    return Preparation("resume", stored_plan)


def unclaim(layout: OutputLayout) -> None:
    """Undo a fresh claim whose job could not start (its model would not load in the
    replicas): the manifest goes, so the fixed rerun is a new job, not "a different job
    spec". Call it holding the lease, and only for a new claim with no shard completed."""
    if completed_shard_ids(layout):
        return  # work was done: the claim stays, a rerun resumes it
    remove(layout.fs, layout.manifest)


def write_success(
    layout: OutputLayout, summary: dict[str, Any], lease: LeaseRecord | None = None
) -> None:
    """Publish `_SUCCESS`; it names the run (and lease generation) that completed it."""
    if lease is not None:
        summary = {**summary, "run_id": lease.run_id, "lease_generation": lease.generation}
    write_json(layout.fs, layout.success, summary)


def read_success(layout: OutputLayout) -> dict[str, Any] | None:
    data = read_json(layout.fs, layout.success)
    return data if isinstance(data, dict) else None


# ----------------------------------------------------------------------------------------
# Reporting: `batchmt status` (`batchmt verify` streams shard by shard: pipeline/outputs/verify.py)


def job_status(layout: OutputLayout) -> dict[str, Any]:
    """Shards done/pending, row counts by status, success marker, merged quality; for a
    table output also the table commit (from `_SUCCESS`) and the input version read."""
    manifest = read_manifest(layout)
    done = completed_shards(layout)
    status_counts: Counter[str] = Counter()
    for result in done.values():
        status_counts.update(result.status_counts)
    quality = _read_many(layout, {sid: layout.quality(sid) for sid in done})
    total = len(manifest[1].shards) if manifest else None
    planned_ids = [s.shard_id for s in manifest[1].shards] if manifest else []
    pending = [sid for sid in planned_ids if sid not in done]
    success = read_success(layout)
    return {
        "output": layout.root,
        "manifest": manifest is not None,
        "spec_fingerprint": manifest[0] if manifest else None,
        "shards": {"total": total, "done": len(done), "pending": len(pending)},
        "pending_shards": pending[:20],
        "rows": {
            "input": manifest[1].num_rows if manifest else None,
            "done": sum(result.num_rows for result in done.values()),
            "ok": sum(status_counts[s] for s in row_status.TRANSLATED),
            "failed": sum(status_counts[s] for s in row_status.ERRORS),
            "by_status": dict(sorted(status_counts.items())),
        },
        "success": success is not None,
        "partition_by": list(manifest[1].output_partitions) if manifest else [],
        # How the input was read: format, the Delta version / Iceberg snapshot, the filter.
        "source": readable_source(manifest[1].source) if manifest else None,
        # Table outputs: where the rows went and the version that holds them; None until
        # the commit (it comes right before _SUCCESS).
        "table": (success or {}).get("table"),
        # The run that finished it: input.since runs also say how many rows were new and
        # how many older rows (of earlier runs) their translations replaced.
        "run": {
            k: (success or {}).get(k)
            for k in ("run_id", "finished_at", "rows_new", "rows_replaced")
            if k in (success or {})
        },
        "quality": merge_quality([quality[sid] for sid in sorted(quality)]) if quality else None,
        # Row-level QE over every row of the completed shards (not only the samples).
        "qe": QeCounts.total([r.qe for r in done.values() if r.qe is not None]).to_dict(),
        "memory": ShardResult.memory_total(done.values()),
    }


def table_job_roots(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """The bookkeeping folders of the jobs that wrote the table at `root` (sorted); [] when
    `root` is no table output."""
    folder = join(root.rstrip("/"), TABLE_JOBS_DIR)
    return [join(folder, name) for name in sorted(list_names(fs, folder))]
