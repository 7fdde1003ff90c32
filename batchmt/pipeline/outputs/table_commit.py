"""The table commit of a Delta or Iceberg output: every shard's file, registered at once.

The driver calls `commit_table` once every shard has its completion marker and before it
writes `_SUCCESS`, holding the output's lease. Until then the shard files sit in the table's
folders but no reader sees them (a table is what its log / snapshots name); after it,
readers see all of them, with the partitions `output.mode` replaces gone in the same commit.

Idempotent: the commit records the job key (pipeline/outputs/tables/*), and a commit that finds the
job's key in the table adds nothing and returns the recorded version. So a driver killed
after the commit and before `_SUCCESS` reruns into "already committed", and a driver killed
before it commits on the rerun, once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.outputs.layout import OutputLayout
from batchmt.pipeline.outputs.partitions import parse_hive_path
from batchmt.pipeline.outputs.supersede import (
    DataFile,
    Rewrite,
    copy_name,
    covered,
    rewrite_without,
    run_ids,
    run_partitions,
)
from batchmt.pipeline.outputs.tables import delta, iceberg
from batchmt.pipeline.outputs.tables.common import (
    FINGERPRINT_KEY,
    RUN_KEY,
    SOURCE_KEY,
    CommitRequest,
    CommitResult,
    TableCommitError,
    TableFile,
)
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.spec import OutputSpec
from batchmt.pipeline.storage.fs import join, with_retries

_THREADS = 16  # one HEAD and one footer read per shard file: latency-bound on S3


def table_location(output: OutputSpec) -> str:
    """The table's URL as the table libraries take it: a local path made absolute (and a
    file:// URL for Iceberg, whose metadata records URLs)."""
    path = output.path.rstrip("/")
    if "://" in path and not path.startswith("file://"):
        return path
    local = os.path.abspath(path.removeprefix("file://"))
    return f"file://{local}" if output.format == "iceberg" else local


def find_commit(output: OutputSpec, layout: OutputLayout) -> CommitResult | None:
    """The job's commit in its table, if one was made (by any run of this job)."""
    if layout.table_format == "delta":
        return delta.find_commit(table_location(output), layout.job_key, output.storage_options)
    catalog, identifier = _catalog(output)
    return iceberg.find_commit(catalog, identifier, layout.job_key)


def _catalog(output: OutputSpec) -> tuple[Any, str]:
    catalog = output.catalog
    if catalog is None or output.table is None:
        raise TableCommitError("output.format iceberg needs output.table and output.catalog")
    try:
        return iceberg.load_catalog(catalog.name, catalog.properties), output.table
    except TableCommitError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the catalog's client raises
        text = str(exc).splitlines()[0] if str(exc) else ""
        for value in catalog.properties.values():  # a URI may hold a password: never shown
            if value and len(value) > 3:
                text = text.replace(value, "***")
        raise TableCommitError(
            f"cannot open Iceberg catalog {catalog.name!r} ({type(exc).__name__}: {text}); "
            "check output.catalog.properties"
        ) from None


def _files(
    layout: OutputLayout, location: str, plan: Plan, results: Mapping[str, ShardResult]
) -> tuple[list[TableFile], pa.Schema]:
    """Every shard's file (size from storage, rows from its marker) and their schema."""

    shards = {s.shard_id: s for s in plan.shards}

    def one(shard_id: str) -> tuple[TableFile, pa.Schema]:
        shard = shards[shard_id]
        partition = layout.partition_of(shard)
        relpath = layout.data_relpath(shard_id, partition)
        path = layout.data(shard_id, partition)

        def read() -> tuple[int, pa.Schema]:
            with layout.fs.open(path, "rb") as f:
                return int(layout.fs.size(path)), pq.read_schema(f)

        size, schema = with_retries(f"read footer {path}", read)
        uri = join(location, relpath)
        return TableFile(relpath, uri, size, results[shard_id].num_rows, partition), schema

    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        pairs = list(pool.map(one, shards))
    schema = pa.unify_schemas([s for _f, s in pairs], promote_options="permissive")
    schema = schema.remove_metadata()
    for column in layout.partition_by:  # Delta files leave them out: they are the path
        if column not in schema.names:
            schema = schema.append(pa.field(column, pa.string()))
    return [f for f, _s in pairs], schema


def commit_table(
    output: OutputSpec,
    layout: OutputLayout,
    plan: Plan,
    results: Mapping[str, ShardResult],
    recorded: Mapping[str, str],
    id_column: str = "",
) -> CommitResult:
    """Register every shard's file in the table in one commit (see the module docstring).

    `recorded`: what the commit records beside the job key (run id, fingerprint, source).
    `id_column` (input.since runs appending to the table): older rows with an id this run
    wrote leave the table in the same commit (pipeline/outputs/supersede.py).
    """
    if not plan.shards:
        # An empty increment (input.since) has no rows to add; an overwrite with nothing to
        # write would empty partitions or the table, which nobody asked a job for.
        return CommitResult(layout.table_format, -1, committed_now=False)
    missing = [s.shard_id for s in plan.shards if s.shard_id not in results]
    if missing:
        raise TableCommitError(f"shards {', '.join(missing[:5])} are not complete; no commit")
    earlier = find_commit(output, layout)
    if earlier is not None:  # a previous run of this job committed: nothing to add
        return earlier
    location = table_location(output)
    files, schema = _files(layout, location, plan, results)
    rewrites = _supersede(output, layout, plan, location, id_column) if id_column else []
    request = CommitRequest(
        location=location,
        files=files,
        schema=schema,
        partition_by=list(layout.partition_by),
        mode=output.mode,
        job_key=layout.job_key,
        properties=dict(recorded),
        replaced=[
            (
                r.old.relpath,
                TableFile(
                    r.new.relpath, join(location, r.new.relpath), r.size, r.rows, r.new.partition
                ),
            )
            for r in rewrites
        ],
    )
    rows_replaced = sum(r.dropped for r in rewrites)
    if layout.table_format == "delta":
        result = delta.commit(request, output.storage_options)
    else:
        catalog, identifier = _catalog(output)
        result = iceberg.commit(request, catalog, identifier)
    return replace(result, rows_replaced=rows_replaced if result.committed_now else 0)


def _supersede(
    output: OutputSpec, layout: OutputLayout, plan: Plan, location: str, id_column: str
) -> list[Rewrite]:
    """Copies of the table's files in this run's partitions without the run's ids (an
    append only: overwrite modes replace those partitions anyway)."""
    if output.mode != "append":
        return []
    fs, root = layout.fs, layout.table_root
    if layout.table_format == "delta":
        found = delta.live_files(location, output.storage_options, list(layout.partition_by))
        live = [DataFile(join(root, rel), rel, part) for rel, part in found]
    else:
        catalog, identifier = _catalog(output)
        live = [
            DataFile(join(root, rel), rel, parse_hive_path(rel))
            for rel, _uri in iceberg.live_files(catalog, identifier, location)
        ]
    ours = f"part-{layout.job_key}-"
    live = [f for f in live if not f.relpath.rsplit("/", 1)[-1].startswith(ours)]
    candidates = covered(live, run_partitions(layout, plan))
    if not candidates:
        return []
    ids = run_ids(layout, plan, id_column)
    return rewrite_without(
        fs, candidates, ids, id_column, lambda old: copy_name(layout.job_key, old, root)
    )


def recorded_properties(run_id: str, fingerprint: str, plan: Plan) -> dict[str, str]:
    """What a commit records beside the job key: the run, the spec, and the input version
    read (`{"format", "version", "location"/"table"}` of the plan's source, as JSON)."""
    out = {RUN_KEY: run_id, FINGERPRINT_KEY: fingerprint}
    read = {
        k: plan.source[k] for k in ("format", "version", "table", "location") if k in plan.source
    }
    if read:
        out[SOURCE_KEY] = json.dumps(read, sort_keys=True, default=str)
    return out
