"""Iceberg: register the job's files in one snapshot, through the catalog (pyiceberg).

append is one APPEND snapshot (`Transaction.add_files`); overwrite_partitions and overwrite
are one OVERWRITE snapshot that deletes the replaced files and adds the job's. A missing
table is created at the output's location (identity partitions on the partition columns)
in the same catalog commit as the first snapshot. The snapshot summary records the job key:
a rerun that finds it adds nothing. A concurrent commit makes the catalog refuse ours
(its snapshot requirement fails); we look again from the fresh table, a bounded number of
times.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from batchmt.pipeline.outputs.partitions import partition_text
from batchmt.pipeline.outputs.tables.common import (
    JOB_KEY,
    LAKES_EXTRA,
    CommitRequest,
    CommitResult,
    TableCommitError,
)

_ATTEMPTS = 5
_NAME_MAPPING = "schema.name-mapping.default"


def _pyiceberg() -> Any:
    try:
        import pyiceberg.catalog
        import pyiceberg.exceptions
        import pyiceberg.io.pyarrow
    except ImportError as exc:
        raise TableCommitError(
            f"output.format iceberg needs the pyiceberg package ({exc}); {LAKES_EXTRA}"
        ) from None
    return pyiceberg


def load_catalog(name: str, properties: Mapping[str, str]) -> Any:
    """The catalog, as `pyiceberg.catalog.load_catalog(name, **properties)` opens it.

    Opening a new SQL catalog creates its tables; two jobs opening it at the same moment
    race there, and the loser opens it again once the winner has made them.
    """
    load = _pyiceberg().catalog.load_catalog
    for attempt in range(_ATTEMPTS):
        try:
            return load(name, **dict(properties))
        except Exception:
            if attempt == _ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _load(catalog: Any, identifier: str) -> Any | None:
    try:
        return catalog.load_table(identifier)
    except _pyiceberg().exceptions.NoSuchTableError:
        return None


def _found(table: Any, job_key: str) -> CommitResult | None:
    for snapshot in table.snapshots():
        summary = snapshot.summary
        extra = summary.additional_properties if summary is not None else {}
        if extra.get(JOB_KEY) == job_key:
            return CommitResult("iceberg", int(snapshot.snapshot_id), committed_now=False)
    return None


def find_commit(catalog: Any, identifier: str, job_key: str) -> CommitResult | None:
    """The job's snapshot in the table, or None (no such snapshot, or no table)."""
    table = _load(catalog, identifier)
    return _found(table, job_key) if table is not None else None


def _check_partitions(table: Any, request: CommitRequest) -> list[str]:
    """The table's identity partition columns, which must be the job's."""
    schema = table.schema()
    names = []
    for spec_field in table.spec().fields:
        source = schema.find_field(spec_field.source_id).name
        names.append(source if str(spec_field.transform) == "identity" else f"{source}?")
    if names != request.partition_by:
        raise TableCommitError(
            f"Iceberg table at {request.location} is partitioned by {names or 'nothing'}, the "
            f"job by {request.partition_by or 'nothing'}; set output.partition_by to match"
        )
    return names


def _create(catalog: Any, identifier: str, request: CommitRequest) -> Any:
    """A create-table transaction: the table exists only once it commits with our files."""
    namespace = identifier.rsplit(".", 1)[0]
    try:
        catalog.create_namespace_if_not_exists(namespace)
    except Exception:
        # Another job created it at the same moment (a SQL catalog raises its own
        # unique-key error there, not NamespaceAlreadyExistsError).
        if not catalog.namespace_exists(namespace):
            raise
    # Full statistics for partition columns: Iceberg infers a file's partition from them,
    # and the default truncates strings past 16 characters.
    properties = {f"write.metadata.metrics.column.{c}": "full" for c in request.partition_by}
    tx = catalog.create_table_transaction(
        identifier, schema=request.schema, location=request.location, properties=properties
    )
    if request.partition_by:
        with tx.update_spec() as spec:
            for column in request.partition_by:
                spec.add_identity(column)
    return tx


def _stage(tx: Any, table: Any | None, request: CommitRequest) -> tuple[int, int]:
    """Stage the snapshot in `tx`; (files removed, files added)."""
    pyarrow_io = _pyiceberg().io.pyarrow
    metadata = tx.table_metadata
    if metadata.name_mapping() is None:  # our files carry no field ids: match by name
        tx.set_properties(**{_NAME_MAPPING: metadata.schema().name_mapping.model_dump_json()})
        metadata = tx.table_metadata
    paths = [f.uri for f in request.files]
    props = request.recorded()
    if (request.mode == "append" and not request.replaced) or table is None:
        tx.add_files(paths, snapshot_properties=props)
        return 0, len(paths)
    positions = list(range(len(request.partition_by)))
    covered = request.covered
    old = [task.file for task in table.scan().plan_files()]
    # input.since: the older files holding ids this run translated again go, their copies
    # without those rows come, in the same overwrite snapshot (pipeline/outputs/supersede.py).
    superseded = {_under(request.location, o) for o, _new in request.replaced}
    paths += [new.uri for _old, new in request.replaced]
    replaced = [
        f
        for f in old
        if request.mode == "overwrite"
        or (
            request.mode != "append"
            and tuple(partition_text(f.partition[i]) for i in positions) in covered
        )
        or _under(request.location, f.file_path) in superseded
    ]
    with tx.update_snapshot(snapshot_properties=props).overwrite() as overwrite:
        for data_file in replaced:
            overwrite.delete_data_file(data_file)
        for path in paths:
            overwrite.append_data_file(
                pyarrow_io.parquet_file_to_data_file(table.io, metadata, path)
            )
    return len(replaced), len(paths)


def _under(location: str, path: str) -> str:
    """A file's path relative to the table location, however the URL spells the scheme."""
    path = path.removeprefix("file://")
    base = location.removeprefix("file://").rstrip("/") + "/"
    return path[len(base) :] if path.startswith(base) else path


def live_files(catalog: Any, identifier: str, location: str) -> list[tuple[str, str]]:
    """(relpath under the location, full URI) of every data file of the table now."""
    table = _load(catalog, identifier)
    if table is None or table.current_snapshot() is None:
        return []
    return [
        (_under(location, t.file.file_path), str(t.file.file_path))
        for t in table.scan().plan_files()
    ]


def commit(request: CommitRequest, catalog: Any, identifier: str) -> CommitResult:
    """Add the request's files in one snapshot (creating the table on the first), replacing
    what `request.mode` says; or find the job's earlier snapshot and add nothing."""
    exceptions = _pyiceberg().exceptions
    last: Exception | None = None
    for _attempt in range(_ATTEMPTS):
        table = _load(catalog, identifier)
        if table is not None:
            found = _found(table, request.job_key)
            if found is not None:
                return found
            _check_partitions(table, request)
            tx = table.transaction()
        else:
            tx = _create(catalog, identifier, request)
        try:
            removed, added = _stage(tx, table, request)
            tx.commit_transaction()
        except (exceptions.CommitFailedException, exceptions.TableAlreadyExistsError) as exc:
            last = exc  # another writer committed first: look at the table again
            continue
        except ValueError as exc:  # pyiceberg's word for a file that does not fit the table
            raise TableCommitError(
                f"Iceberg commit to {identifier} refused the job's files: {exc}; write to a "
                "table with the job's columns and partitions (output.table)"
            ) from None
        table = _load(catalog, identifier)
        found = _found(table, request.job_key) if table is not None else None
        if found is None:
            raise TableCommitError(f"Iceberg table {identifier} lacks the job's snapshot")
        return CommitResult("iceberg", found.version, True, removed, added)
    raise TableCommitError(
        f"Iceberg commit to {identifier} kept conflicting with other writers ({last}); rerun "
        "the job to try again"
    )
