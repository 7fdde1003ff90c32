"""Delta Lake: register the job's files in one commit (deltalake's write transaction).

The commit carries an app transaction (`batchmt:<job key>`, version 1) and the job key in
its commit info. Before committing, the table is asked for that app transaction: a job
whose commit already happened (a driver killed before `_SUCCESS`, a rerun of a finished job)
finds it and does not add its files twice. A conflicting concurrent commit is retried from
a fresh snapshot (the check included), a bounded number of times.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from functools import partial
from typing import Any
from urllib.parse import unquote

import pyarrow as pa

from batchmt.pipeline.outputs.partitions import partition_text, partition_value
from batchmt.pipeline.outputs.tables.common import (
    JOB_KEY,
    LAKES_EXTRA,
    CommitRequest,
    CommitResult,
    TableCommitError,
)
from batchmt.pipeline.storage.fs import join, open_fs, with_retries
from batchmt.pipeline.storage.object_store import delta_rs_options

_ATTEMPTS = 5
# How far back the log is searched for the job's commit version (it is recorded anyway).
_SCAN_VERSIONS = 1000
_APP_VERSION = 1  # one commit per job key: a key that has it is done


def app_id(job_key: str) -> str:
    return f"batchmt:{job_key}"


def _deltalake() -> Any:
    try:
        import deltalake
        import deltalake.transaction
    except ImportError as exc:
        raise TableCommitError(
            f"output.format delta needs the deltalake package ({exc}); {LAKES_EXTRA}"
        ) from None
    return deltalake


def _options(location: str, storage_options: Mapping[str, Any]) -> dict[str, str]:
    options = delta_rs_options(location, storage_options)
    if location.startswith(("s3://", "s3a://")):
        options.setdefault("aws_conditional_put", "etag")
    return options


def _load(location: str, options: dict[str, str]) -> Any | None:
    dl = _deltalake()
    try:
        return dl.DeltaTable(location, storage_options=options)
    except dl.exceptions.TableNotFoundError:
        return None


def find_commit(
    location: str, job_key: str, storage_options: Mapping[str, Any]
) -> CommitResult | None:
    """The job's commit in the table, or None when the table lacks it (or does not exist)."""
    table = _load(location, _options(location, storage_options))
    return _found(table, location, job_key, storage_options) if table is not None else None


def _found(
    table: Any, location: str, job_key: str, storage_options: Mapping[str, Any]
) -> CommitResult | None:
    """The job's commit: the app transaction says whether; the log says which version."""
    if table.transaction_version(app_id(job_key)) is None:
        return None
    version = _commit_version(location, int(table.version()), job_key, storage_options)
    return CommitResult("delta", version, committed_now=False)


def _commit_version(
    location: str, latest: int, job_key: str, storage_options: Mapping[str, Any]
) -> int:
    """The version whose commit info names the job, newest first (the job's commit is
    usually among the last); -1 once the log was cleaned up past it.

    Read from the log files directly: `DeltaTable.history()` lists the whole log, and
    hangs on some S3 endpoints (moto's server)."""
    fs, root = open_fs(location, dict(storage_options))
    for version in range(latest, max(-1, latest - _SCAN_VERSIONS), -1):
        path = join(root, "_delta_log", f"{version:020d}.json")
        try:
            text = with_retries(f"read {path}", partial(fs.cat_file, path)).decode()
        except FileNotFoundError:
            break  # cleaned up (a checkpoint holds the rest)
        for line in text.splitlines():
            info = json.loads(line).get("commitInfo") if line.strip() else None
            if isinstance(info, dict) and info.get(JOB_KEY) == job_key:
                return version
    return -1


def _field_types(schema: Any) -> dict[str, str]:
    """{column: its Delta type}, nullability aside."""
    return {f["name"]: json.dumps(f["type"]) for f in json.loads(schema.to_json())["fields"]}


def _values(partition: Mapping[str, str]) -> dict[str, str | None]:
    """A file's partition values as the log records them (a null partition is null)."""
    return {c: partition_value(v) for c, v in partition.items()}


def _adds(request: CommitRequest) -> list[Any]:
    dl = _deltalake()
    now = int(time.time() * 1000)
    copies = [new for _old, new in request.replaced]
    return [
        dl.transaction.AddAction(
            path=f.relpath,  # as stored: deltalake escapes it for the log itself
            size=f.size,
            partition_values=_values(f.partition),
            modification_time=now,
            data_change=True,
            stats=json.dumps({"numRecords": f.rows}),
        )
        for f in [*request.files, *copies]
    ]


def _replaced_removes(request: CommitRequest) -> list[Any]:
    """Remove actions for the older files whose copies (without the run's ids) we add."""
    dl = _deltalake()
    now = int(time.time() * 1000)
    return [
        dl.transaction.RemoveAction(
            path=old,
            data_change=True,
            deletion_timestamp=now,
            partition_values=_values(new.partition),
        )
        for old, new in request.replaced
    ]


def live_files(
    location: str, storage_options: Mapping[str, Any], partition_by: list[str]
) -> list[tuple[str, dict[str, str]]]:
    """(relpath as stored, partition) of every file of the table now; [] without a table."""
    table = _load(location, _options(location, storage_options))
    if table is None:
        return []
    out = []
    for action in pa.table(table.get_add_actions(flatten=True)).to_pylist():
        values = {c: partition_text(action.get(f"partition.{c}")) for c in partition_by}
        out.append((unquote(action["path"]), values))
    return out


def _removes(table: Any, request: CommitRequest) -> list[Any]:
    """Remove actions for the files the mode replaces (none for append)."""
    if request.mode == "append":
        return []
    dl = _deltalake()
    now = int(time.time() * 1000)
    covered = request.covered
    removes = []
    for action in pa.table(table.get_add_actions(flatten=True)).to_pylist():
        values = {c: action.get(f"partition.{c}") for c in request.partition_by}
        key = tuple(partition_text(values[c]) for c in request.partition_by)
        if request.mode == "overwrite" or key in covered:
            removes.append(
                dl.transaction.RemoveAction(
                    # get_add_actions gives the log's (escaped) path; actions take it raw.
                    path=unquote(action["path"]),
                    data_change=True,
                    deletion_timestamp=now,
                    size=action.get("size_bytes"),
                    partition_values=values,
                )
            )
    return removes


def _check_compatible(table: Any, request: CommitRequest) -> None:
    partitions = list(table.metadata().partition_columns)
    if partitions != request.partition_by:
        raise TableCommitError(
            f"Delta table {request.location} is partitioned by {partitions or 'nothing'}, the "
            f"job by {request.partition_by or 'nothing'}; set output.partition_by to match"
        )
    ours = _field_types(_deltalake().Schema.from_arrow(request.schema))
    theirs = _field_types(table.schema())
    if ours != theirs:
        differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        raise TableCommitError(
            f"the job's columns differ from Delta table {request.location}'s in "
            f"{', '.join(differ)}; write to a table with the job's columns (output.path), or "
            "make the job write the table's (glossary/formats settings add columns)"
        )


def commit(request: CommitRequest, storage_options: Mapping[str, Any]) -> CommitResult:
    """Add the request's files in one commit (creating the table on the first), replacing
    what `request.mode` says; or find the job's earlier commit and add nothing."""
    dl = _deltalake()
    options = _options(request.location, storage_options)
    properties = dl.transaction.CommitProperties(
        custom_metadata=request.recorded(),
        app_transactions=[dl.transaction.Transaction(app_id(request.job_key), _APP_VERSION)],
    )
    last: Exception | None = None
    for _attempt in range(_ATTEMPTS):
        table = _load(request.location, options)
        if table is not None:
            found = _found(table, request.location, request.job_key, storage_options)
            if found is not None:
                return found
        adds = _adds(request)
        try:
            if table is None:
                dl.transaction.create_table_with_add_actions(
                    request.location,
                    dl.Schema.from_arrow(request.schema),
                    adds,
                    mode="error",
                    partition_by=request.partition_by or None,
                    storage_options=options,
                    commit_properties=properties,
                )
                removes: list[Any] = []
            else:
                _check_compatible(table, request)
                removes = _removes(table, request)
                replaced = {unquote(str(r.path)) for r in removes}
                removes += [
                    r for r in _replaced_removes(request) if unquote(str(r.path)) not in replaced
                ]
                table.create_write_transaction(
                    [*removes, *adds],
                    "append",  # the replaced files are the explicit remove actions
                    table.schema(),
                    partition_by=request.partition_by or None,
                    commit_properties=properties,
                )
        except TableCommitError:
            raise
        except Exception as exc:  # noqa: BLE001 - a concurrent writer won: look again
            if not _is_conflict(exc):
                raise TableCommitError(
                    f"Delta commit to {request.location} failed: {exc}"
                ) from None
            last = exc
            continue
        table = _load(request.location, options)
        found = (
            _found(table, request.location, request.job_key, storage_options)
            if table is not None
            else None
        )
        if found is None:
            raise TableCommitError(f"Delta table {request.location} lacks the job's commit")
        return CommitResult("delta", found.version, True, len(removes), len(adds))
    raise TableCommitError(
        f"Delta commit to {request.location} kept conflicting with other writers ({last}); "
        "rerun the job to try again"
    )


def _is_conflict(exc: Exception) -> bool:
    """A commit another writer beat (or a table another job created first)."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        word in text
        for word in ("conflict", "concurrent", "already exists", "version already", "commitfailed")
    )
