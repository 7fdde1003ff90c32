"""Where each piece of a job's output lives (the layout), and its manifest read back.

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
duplicating. What the files hold is typed in `records/`; how a run is written, in commit.py;
how an output's runs are found and opened, in runs.py.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import fsspec

from batchmt.pipeline.errors import UserError
from batchmt.pipeline.inputs.shards import SHARD_ID_PATTERN, Plan, Shard
from batchmt.pipeline.outputs.partitions import hive_path, parse_hive_path, shard_partition
from batchmt.pipeline.outputs.records.manifest import Manifest, parse_manifest
from batchmt.pipeline.spec import JobSpec, OutputSpec
from batchmt.pipeline.storage.fs import join, list_names, open_fs, read_json, write_json

# A table output's bookkeeping folder, beside the table's own (`_delta_log/`, `metadata/`):
# table readers skip it, as they skip every file the table's log does not name. Parquet
# outputs of input.since runs keep one folder per run there too.
TABLE_JOBS_DIR = "_batchmt"
# The driver hands its actors where shard files go, with the lease generation (JSON:
# {"partition_by": [...], "job_key": "..."}): a worker then files each shard under the
# partition the frozen plan says, in the job's folder of a table output.
LAYOUT_ENV = "BATCHMT_OUTPUT_LAYOUT"
# A Parquet output's input.since run: how many older rows it replaced (outputs/supersede.py),
# kept so that a rerun after a kill before _SUCCESS still reports them.
REPLACED_FILE = "_replaced.json"


class OutputConflictError(UserError, RuntimeError):
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
    name = job_name_part(spec.job_name)
    return f"{name}-{spec.fingerprint()}" + (f"-{increment}" if increment else "")


def job_name_part(job_name: str) -> str:
    """A job key's name part: the job name made path-safe."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", job_name).strip("-.")[:48] or "job"


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


def load_manifest(layout: OutputLayout) -> Manifest | None:
    """`_manifest.json` parsed, or None when absent; OutputConflictError when it is no
    batchmt manifest (or one of a newer batchmt)."""
    data = read_json(layout.fs, layout.manifest)
    if data is None:
        return None
    try:
        return parse_manifest(data)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise OutputConflictError(
            f"{layout.manifest} is not a batchmt manifest this version reads ({exc}); use "
            "--set output.overwrite=true to start over, or choose another output.path"
        ) from None


def read_manifest(layout: OutputLayout) -> tuple[str, Plan] | None:
    """(spec fingerprint, frozen plan) from `_manifest.json`, or None when absent."""
    manifest = load_manifest(layout)
    return (manifest.spec_fingerprint, manifest.plan) if manifest else None


def write_manifest(layout: OutputLayout, manifest: Manifest) -> None:
    write_json(layout.fs, layout.manifest, manifest.to_dict())


def table_job_roots(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """The run folders under `<root>/_batchmt/` (sorted): a table output's jobs, or a
    Parquet output's input.since runs; [] when there are none."""
    folder = join(root.rstrip("/"), TABLE_JOBS_DIR)
    return [join(folder, name) for name in sorted(list_names(fs, folder))]
