"""Each id once across incremental runs: drop from older data files the ids a new run wrote.

An `input.since` run translates the rows of every new input file: new rows, and rows of a
rewritten file (an updated row, its unchanged neighbours). Its translation of an id replaces
any older one. Before the run finishes, each older data file that can hold its ids (the same
output partitions: an id that moved partition is not looked for elsewhere) is read by its id
column only; a file that holds some of them is rewritten without those rows.

- Plain Parquet output: the copy replaces the file in place (`storage.publish`, atomic per
  file), before this run's `_SUCCESS`. A reader of the folder may briefly see such a row twice
  (old file and new run's file), never zero times.
- Delta / Iceberg output: the copy is a new file beside it (`part-<job key>-r<digest>`) and
  the run's one commit removes the old file and adds the copy with the run's own files, so a
  table reader sees each id once at every version.

Rerunning after a kill is safe: the ids are gone from the copies, so nothing is rewritten
twice. Rows deleted from the source are not propagated (an increment only sees new files).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.outputs.layout import OutputLayout
from batchmt.pipeline.outputs.partitions import hive_path, parse_hive_path
from batchmt.pipeline.storage.fs import join, publish, with_retries

log = logging.getLogger(__name__)

_READ_THREADS = 16


@dataclass(frozen=True)
class DataFile:
    """An older data file of the output that may hold ids of the new run."""

    path: str  # as the filesystem names it
    relpath: str  # under the data root (hive folders, as stored)
    partition: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rewrite:
    """An older file, and its copy without the new run's ids."""

    old: DataFile
    new: DataFile  # the same file for a plain Parquet output (rewritten in place)
    rows: int  # rows the copy keeps
    dropped: int  # rows of the old file whose id the new run translated again
    size: int  # bytes of the copy


def run_ids(layout: OutputLayout, plan: Plan, id_column: str) -> pa.ChunkedArray:
    """The ids the run wrote (its data files' id column only), as strings."""
    chunks: list[pa.Array] = []
    for shard in plan.shards:
        path = layout.data(shard.shard_id, layout.partition_of(shard))
        ids = _read_ids(layout.fs, path, id_column)
        chunks.extend(ids.chunks)
    return pa.chunked_array(chunks, pa.string())


def _read_ids(fs: fsspec.AbstractFileSystem, path: str, id_column: str) -> pa.ChunkedArray:
    def read() -> pa.ChunkedArray:
        with fs.open(path, "rb") as f:
            return pq.read_table(f, columns=[id_column]).column(id_column)

    column = with_retries(f"read ids of {path}", read)
    return pc.cast(column, pa.string())


def run_partitions(layout: OutputLayout, plan: Plan) -> list[dict[str, str]]:
    """The output partitions the run wrote ([{}] for an unpartitioned output)."""
    seen: dict[str, dict[str, str]] = {}
    for shard in plan.shards:
        partition = layout.partition_of(shard)
        seen.setdefault(hive_path(partition), dict(partition))
    return list(seen.values()) or [{}]


def parquet_candidates(layout: OutputLayout, plan: Plan) -> list[DataFile]:
    """A Parquet output's data files of other runs in the partitions this run wrote."""
    ours = f"part-{layout.job_key}-"
    base = layout.data_dir.rstrip("/") + "/"
    out = []
    for partition in run_partitions(layout, plan):
        folder = join(layout.data_dir, hive_path(partition)) if partition else layout.data_dir
        layout.fs.invalidate_cache(folder)
        try:
            found = layout.fs.find(folder) if partition else layout.fs.ls(folder, detail=False)
        except FileNotFoundError:
            continue
        for path in sorted(str(p) for p in found):
            name = path.rsplit("/", 1)[-1]
            if not name.endswith(".parquet") or name.startswith((ours, ".")):
                continue
            relpath = path[len(base) :] if path.startswith(base) else name
            out.append(DataFile(path, relpath, parse_hive_path(relpath)))
    return out


def rewrite_without(
    fs: fsspec.AbstractFileSystem,
    files: Iterable[DataFile],
    ids: pa.ChunkedArray,
    id_column: str,
    target: Callable[[DataFile], DataFile],
) -> list[Rewrite]:
    """Rewrite each file holding some of `ids` without those rows, to `target(file)`.

    Only the id column of every file is read; a whole file only when it holds some ids.
    """
    if len(ids) == 0:
        return []
    value_set = pc.unique(ids.combine_chunks())

    def hits(old: DataFile) -> pa.ChunkedArray:
        return pc.is_in(_read_ids(fs, old.path, id_column), value_set=value_set)

    files = list(files)
    # One footer and one column read per file: latency-bound on S3, so in parallel.
    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        found = list(pool.map(hits, files))
    out = []
    for old, hit in zip(files, found, strict=True):
        dropped = int(pc.sum(hit).as_py() or 0)
        if not dropped:
            continue

        def read(path: str = old.path) -> pa.Table:
            with fs.open(path, "rb") as f:
                return pq.read_table(f)

        table = with_retries(f"read {old.path}", read)
        kept = table.filter(pc.invert(hit))
        new = target(old)
        buffer = io.BytesIO()
        pq.write_table(kept, buffer, compression="zstd")
        with publish(fs, new.path) as f:
            f.write(buffer.getbuffer())
        out.append(Rewrite(old, new, kept.num_rows, dropped, buffer.tell()))
        log.info("superseded %d row(s) of %s (copy: %s)", dropped, old.path, new.path)
    return out


def copy_name(job_key: str, old: DataFile, location: str) -> DataFile:
    """A table output's copy of `old`: a new file beside it, named for the run and the old
    file (the same on a rerun, so a killed run's copy is overwritten, not doubled)."""
    digest = hashlib.sha256(old.relpath.encode()).hexdigest()[:16]
    folder, _, _name = old.relpath.rpartition("/")
    name = f"part-{job_key}-r{digest}.parquet"
    relpath = f"{folder}/{name}" if folder else name
    return DataFile(join(location, relpath), relpath, old.partition)


def supersede_parquet(layout: OutputLayout, plan: Plan, id_column: str) -> int:
    """A Parquet output's run (input.since): drop its ids from the other runs' files, in
    place; the number of older rows replaced."""
    if not layout.runs_root or not plan.shards:
        return 0
    candidates = parquet_candidates(layout, plan)
    if not candidates:
        return 0
    ids = run_ids(layout, plan, id_column)
    rewrites = rewrite_without(layout.fs, candidates, ids, id_column, lambda f: f)
    return sum(r.dropped for r in rewrites)


def covered(files: Sequence[DataFile], partitions: Sequence[Mapping[str, str]]) -> list[DataFile]:
    """The files in one of `partitions` (all of them for an unpartitioned output)."""
    keys = {hive_path(p) for p in partitions}
    if keys == {""}:
        return list(files)
    return [f for f in files if hive_path(f.partition) in keys]
