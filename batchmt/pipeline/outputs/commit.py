"""How a run is written: claim the output (fresh, resume or refuse), publish each shard's
data and quality files, mark it complete, and finish with `_SUCCESS`.

Where each file goes is layout.py; what each file holds, records/. Order is the protocol:
a shard's data and quality files are closed before its completion marker is written, and
the marker is what makes the shard output (readers trust nothing else); `_SUCCESS` comes
last. Workers refuse to publish once their driver lost the output's lease (`_fence`).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.outputs.layout import (
    REPLACED_FILE,
    OutputConflictError,
    OutputLayout,
    data_files_found,
    load_manifest,
    write_manifest,
)
from batchmt.pipeline.outputs.lease import GENERATION_ENV, LeaseRecord, check_fence
from batchmt.pipeline.outputs.partitions import NULL_PARTITION
from batchmt.pipeline.outputs.records.manifest import Manifest
from batchmt.pipeline.outputs.records.markers import (
    LEGACY_RUN,
    CompletionMarker,
    completed_shard_ids,
    counted_markers,
    write_marker,
)
from batchmt.pipeline.outputs.records.success import Success
from batchmt.pipeline.outputs.resume_checks import InputChangedError, ManifestError, check_resumable
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.storage.fs import join, publish, remove, write_json

log = logging.getLogger(__name__)


def _fence(layout: OutputLayout) -> None:
    """Inside a worker: refuse to publish once this job's driver lost the output's lease.

    The driver hands its lease generation to the actors it starts (GENERATION_ENV); bare
    callers (tests, tools) have none and are not fenced.
    """
    generation = os.environ.get(GENERATION_ENV)
    if generation:
        check_fence(layout.fs, layout.root, int(generation))


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

    The marker carries the run id and lease generation of the driver that wrote it
    (records/manifest.py says which markers count).
    """
    if lease is None:
        write_marker(layout, CompletionMarker(result))
    else:
        write_marker(layout, CompletionMarker(result, lease.run_id, lease.generation))


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
        write_manifest(layout, Manifest(spec_fingerprint, plan, runs))
        return Preparation("new", plan)
    stored = load_manifest(layout)
    if stored is None:
        write_manifest(layout, Manifest(spec_fingerprint, plan, runs))
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
        carried = {sid: marker.run_id for sid, marker in counted_markers(layout).items()}
        previous = stored.runs if stored.runs is not None else [LEGACY_RUN]
        write_manifest(
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
    record = Success.of(
        summary, lease.run_id if lease else None, lease.generation if lease else None
    )
    write_json(layout.fs, layout.success, record.to_dict())
