"""A Delta table's live files at one version, read from its log with deltalake (delta-rs).

The table folder also holds files that the version removed (overwritten, deleted, not yet
vacuumed): only the version's add actions are planned, with their partition values. The
version is pinned at planning time (the latest unless input.version names one). For
input.since, the live files of an earlier version and the version current at a time.

Refused, because reading whole Parquet files would return wrong rows: deletion vectors
(rows deleted in place) and column mapping (files name columns by physical ids).
"""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import unquote

import pyarrow as pa

from batchmt.pipeline.inputs.corpus import CorpusError
from batchmt.pipeline.inputs.sources.listing import (
    LAKES_EXTRA,
    InputFile,
    Listing,
    modified_at,
    ordered,
)
from batchmt.pipeline.spec import InputSpec
from batchmt.pipeline.storage.fs import open_fs, with_retries
from batchmt.pipeline.storage.object_store import delta_rs_options


def _import_deltalake() -> Any:
    try:
        import deltalake
    except ImportError:
        raise CorpusError(f"input is a Delta table: reading it needs {LAKES_EXTRA}") from None
    return deltalake


def _open_table(input_spec: InputSpec, version: int | None) -> Any:
    deltalake = _import_deltalake()
    uri = input_spec.path.rstrip("/")
    options = delta_rs_options(uri, input_spec.storage_options) or None
    try:
        latest = deltalake.DeltaTable(uri, storage_options=options)
    except deltalake.exceptions.TableNotFoundError:
        raise CorpusError(
            f"input.path {uri} is not a Delta table (no _delta_log/ there); check the path, "
            "or set input.format to parquet or iceberg"
        ) from None
    except (deltalake.exceptions.DeltaError, OSError) as exc:  # storage, credentials, log
        reason = " ".join(str(exc).split())[:200]
        raise CorpusError(
            f"cannot open Delta table {uri} ({type(exc).__name__}: {reason}); check input.path "
            "and input.storage_options"
        ) from None
    if version is None or version == latest.version():
        return latest
    if version > latest.version():
        raise CorpusError(
            f"input.version {version} of Delta table {uri} does not exist (latest is "
            f"{latest.version()}); set input.version to an existing version or remove it"
        )
    try:
        return deltalake.DeltaTable(uri, version=version, storage_options=options)
    except deltalake.exceptions.DeltaError as exc:  # e.g. a log cleaned up past it
        raise CorpusError(
            f"input.version {version} of Delta table {uri} cannot be loaded ({exc}); its log "
            "may have been cleaned up: set input.version to a later version"
        ) from None


def _refuse_unreadable(table: Any, uri: str) -> None:
    """Features whose files do not hold the table's rows as plain Parquet columns."""
    version = table.version()
    mode = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    if mode != "none":
        raise CorpusError(
            f"Delta table {uri} version {version} uses column mapping (mode {mode}): its "
            "files name columns by physical names, which batchmt does not translate; "
            "rewrite it without column mapping (e.g. CREATE TABLE ... AS SELECT) to read it"
        )
    features = table.protocol().reader_features or []
    if "deletionVectors" not in features:
        return
    from deltalake.exceptions import DeltaError

    try:
        marked = pa.table(table.deletion_vectors()).num_rows
    except (DeltaError, NotImplementedError, OSError):  # cannot tell: refuse, never guess
        marked = -1
    if marked:
        count = f"{marked} file(s)" if marked > 0 else "files"
        raise CorpusError(
            f"Delta table {uri} version {version} has deletion vectors on {count}: reading "
            "whole files would bring deleted rows back; purge them first (Spark/Databricks: "
            "REORG TABLE ... APPLY (PURGE), or OPTIMIZE), or disable deletion vectors "
            "(delta.enableDeletionVectors=false) before deleting"
        )


def _text(value: Any) -> str:
    """A partition value as text, as Delta writes it in a hive folder name."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _live_files(table: Any, input_spec: InputSpec) -> tuple[list[InputFile], list[str]]:
    """The add actions of the loaded version as files (paths as readers open them)."""
    uri = input_spec.path.rstrip("/")
    columns = list(table.metadata().partition_columns)
    actions = pa.table(table.get_add_actions(flatten=True))
    _, root = open_fs(uri, input_spec.storage_options)
    remote = "://" in uri and not uri.startswith("file://")
    base = f"{uri.split('://', 1)[0]}://{root.rstrip('/')}" if remote else root.rstrip("/")
    paths = actions.column("path").to_pylist()
    values = {
        c: actions.column(f"partition.{c}").to_pylist()
        for c in columns
        if f"partition.{c}" in actions.column_names
    }
    counts: list[Any] = [None] * len(paths)
    if "num_records" in actions.column_names:  # absent when the writer kept no stats
        counts = actions.column("num_records").to_pylist()
    files = []
    for i, raw in enumerate(paths):
        # The log stores paths URL-encoded; absolute ones (shallow clones) are URLs.
        path = unquote(raw)
        path = path.removeprefix("file://") if "://" in path else f"{base}/{path}"
        partition = {c: _text(v[i]) for c, v in values.items() if v[i] is not None}
        rows = int(counts[i]) if counts[i] is not None else None
        files.append(InputFile(path, partition, rows))
    return files, columns


def list_delta(input_spec: InputSpec, version: int | None) -> Listing:
    """The live data files of the table at `version` (None: the latest now)."""
    uri = input_spec.path.rstrip("/")
    table = _open_table(input_spec, version)
    _refuse_unreadable(table, uri)
    files, columns = _live_files(table, input_spec)
    source = {"format": "delta", "version": table.version(), "location": uri}
    return Listing(ordered(files, columns), columns, source)


def live_paths(input_spec: InputSpec, version: int) -> set[str]:
    """The paths of the files live at an earlier `version` (an increment's start); named
    as list_delta names them, so the two subtract. Nothing is refused: no file is read."""
    uri = input_spec.path.rstrip("/")
    deltalake = _import_deltalake()
    options = delta_rs_options(uri, input_spec.storage_options) or None
    try:
        table = deltalake.DeltaTable(uri, version=version, storage_options=options)
    except (deltalake.exceptions.DeltaError, OSError) as exc:  # gone from the log
        reason = " ".join(str(exc).split())[:200]
        raise CorpusError(
            f"input.since: version {version} of Delta table {uri} cannot be loaded "
            f"({reason}); its log may have been cleaned up: set input.since to a later "
            "version or timestamp (or remove it to translate every live row)"
        ) from None
    return {f.path for f in _live_files(table, input_spec)[0]}


def version_at(input_spec: InputSpec, when: datetime.datetime) -> int | None:
    """The version that was current at `when` (Delta resolves it by the commit files'
    modification times); None when the table did not exist yet."""
    uri = input_spec.path.rstrip("/")
    table = _open_table(input_spec, None)
    table.load_as_version(when)
    version = int(table.version())
    # delta-rs answers the oldest version it still has for a time before it: check.
    fs, root = open_fs(uri, input_spec.storage_options)
    commit = f"{root.rstrip('/')}/_delta_log/{version:020d}.json"
    try:
        written = modified_at(with_retries(f"stat {commit}", lambda: fs.info(commit)))
    except FileNotFoundError:
        written = None  # only a checkpoint left: it was current at `when`
    if written is None or written <= when.timestamp():
        return version
    if version == 0:
        return None
    raise CorpusError(
        f"input.since {when.isoformat()} is before version {version}, the oldest one the "
        f"log of Delta table {uri} still has; set input.since to a later time or version"
    )
