"""An Iceberg table's data files at one snapshot, planned with pyiceberg.

The table comes from a catalog (input.table + input.catalog, pyiceberg's
`load_catalog(name, **properties)`) or from a table folder without one (its newest
`metadata/*.metadata.json`). The snapshot is pinned at planning time (the current one
unless input.version names one). Metadata is read through pyiceberg's FileIO, configured by
the catalog's properties, else from input.storage_options; data files are then read like
any Parquet file, through fsspec with input.storage_options.

Identity partitions are partition columns (values as text, like hive folders); other
transforms (bucket, day...) are not columns and cannot be filtered on. Delete files
(merge-on-read deletes) are refused: reading whole data files would return deleted rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from batchmt.pipeline.inputs.corpus import CorpusError
from batchmt.pipeline.inputs.sources.listing import LAKES_EXTRA, InputFile, Listing, ordered
from batchmt.pipeline.spec import InputSpec
from batchmt.pipeline.storage.fs import open_fs, with_retries

# fsspec / s3fs spelling -> pyiceberg FileIO property, for tables read without a catalog
# (or a catalog whose properties do not say).
_S3_PROPERTIES = {
    "endpoint_url": "s3.endpoint",
    "key": "s3.access-key-id",
    "secret": "s3.secret-access-key",
    "token": "s3.session-token",
    "region_name": "s3.region",
}
_VERSION = re.compile(r"v?(\d+)")


def fileio_properties(options: Mapping[str, Any]) -> dict[str, str]:
    """input.storage_options as pyiceberg FileIO properties (keys with a dot pass as given)."""
    flat = dict(options)
    client = flat.pop("client_kwargs", None) or {}
    for key in ("endpoint_url", "region_name"):
        if key in client:
            flat.setdefault(key, client[key])
    out = {_S3_PROPERTIES[k]: str(v) for k, v in flat.items() if k in _S3_PROPERTIES and v}
    out.update({k: str(v) for k, v in flat.items() if "." in k})
    return out


def _import_pyiceberg() -> Any:
    try:
        import pyiceberg.table
    except ImportError:
        raise CorpusError(f"input is an Iceberg table: reading it needs {LAKES_EXTRA}") from None
    return pyiceberg


def _newest_metadata(input_spec: InputSpec) -> str:
    """The URL of a table folder's newest metadata file (version-hint.text if present)."""
    fs, root = open_fs(input_spec.path, input_spec.storage_options)
    folder = f"{root.rstrip('/')}/metadata"
    names = [
        p.rsplit("/", 1)[-1]
        for p in with_retries(f"list {folder}", lambda: fs.glob(f"{folder}/*.metadata.json"))
    ]
    if not names:
        raise CorpusError(
            f"input.path {input_spec.path} is not an Iceberg table (no metadata/*.metadata.json);"
            " check the path, or name the table with input.table and input.catalog"
        )

    def number(name: str) -> int:
        match = _VERSION.match(name)
        return int(match.group(1)) if match else -1

    newest = max(names, key=lambda n: (number(n), n))
    hint = f"{folder}/version-hint.text"
    if with_retries(f"stat {hint}", lambda: fs.exists(hint)):  # Hadoop tables name theirs
        wanted = with_retries(f"read {hint}", lambda: fs.cat_file(hint)).decode().strip()
        if wanted.isdigit():
            newest = next((n for n in names if number(n) == int(wanted)), newest)
    return f"{input_spec.path.rstrip('/')}/metadata/{newest}"


def _load_table(input_spec: InputSpec) -> Any:
    pyiceberg = _import_pyiceberg()
    from pyiceberg.exceptions import NoSuchTableError

    properties = fileio_properties(input_spec.storage_options)
    if input_spec.table is not None and input_spec.catalog is not None:
        from pyiceberg.catalog import load_catalog

        catalog = input_spec.catalog
        try:
            loaded = load_catalog(catalog.name, **{**properties, **catalog.properties})
            return loaded.load_table(input_spec.table)
        except NoSuchTableError:
            raise CorpusError(
                f"input.table {input_spec.table} not found in Iceberg catalog {catalog.name}; "
                "check input.table and input.catalog"
            ) from None
        except (ValueError, OSError, ImportError) as exc:  # no type, unreachable, no driver
            raise CorpusError(
                f"cannot open Iceberg catalog {catalog.name} ({type(exc).__name__}); check "
                "input.catalog.properties (type, uri, warehouse)"
            ) from None
    location = _newest_metadata(input_spec)
    return pyiceberg.table.StaticTable.from_metadata(location, properties=properties)


def _snapshot(table: Any, snapshot_id: int | None, where: str, key: str = "input.version") -> Any:
    if snapshot_id is None:
        snapshot = table.current_snapshot()
        if snapshot is None:
            raise CorpusError(f"Iceberg table {where} has no snapshot yet (no data to read)")
        return snapshot
    snapshot = table.snapshot_by_id(snapshot_id)
    if snapshot is None:
        known = ", ".join(str(s.snapshot_id) for s in table.snapshots()[-5:]) or "none"
        raise CorpusError(
            f"{key} {snapshot_id} is not a snapshot of Iceberg table {where} (latest "
            f"snapshots: {known}; expire_snapshots removes old ones); set {key} to a "
            "snapshot id or remove it"
        )
    return snapshot


def _refuse_renamed_columns(table: Any, schema: Any, where: str) -> None:
    """Data files name columns as they were called when written; Iceberg matches them by
    field id, batchmt by name. A column renamed (or dropped and added again under its old
    name) since an earlier schema would read as nulls, or as another column's data: refuse.
    Conservative: the schema history says a rename happened, not which files predate it."""
    now_by_id = {f.field_id: f.name for f in schema.fields}
    now_by_name = {f.name: f.field_id for f in schema.fields}
    for old in table.schemas().values():
        if old.schema_id > schema.schema_id:
            continue
        for field in old.fields:
            renamed = now_by_id.get(field.field_id, field.name) != field.name
            reused = now_by_name.get(field.name, field.field_id) != field.field_id
            if renamed or reused:
                change = (
                    f"was renamed to {now_by_id[field.field_id]!r}"
                    if renamed
                    else "was dropped and added again"
                )
                raise CorpusError(
                    f"Iceberg table {where}: column {field.name!r} {change} (schema "
                    f"{old.schema_id} -> {schema.schema_id}); older data files still name "
                    "columns as written and batchmt reads them by name: rewrite the data files "
                    "(e.g. Spark rewrite_data_files with rewrite-all) or read an earlier "
                    "snapshot (input.version)"
                )


def _local(path: str) -> str:
    return path.removeprefix("file://") if path.startswith("file:///") else path


def list_iceberg(input_spec: InputSpec, snapshot_id: int | None) -> Listing:
    """The data files of the table at `snapshot_id` (None: the current snapshot now)."""
    from pyiceberg.manifest import FileFormat
    from pyiceberg.transforms import IdentityTransform

    where = input_spec.table or input_spec.path
    table = _load_table(input_spec)
    snapshot = _snapshot(table, snapshot_id, where)
    schema = table.schemas().get(snapshot.schema_id, table.schema())
    _refuse_renamed_columns(table, schema, where)
    specs = table.specs()
    tasks = list(table.scan(snapshot_id=snapshot.snapshot_id).plan_files())
    with_deletes = [t.file.file_path for t in tasks if t.delete_files]
    if with_deletes:
        raise CorpusError(
            f"Iceberg table {where} snapshot {snapshot.snapshot_id} has delete files on "
            f"{len(with_deletes)} data file(s) (merge-on-read deletes): reading whole files "
            "would bring deleted rows back; compact the table first (Spark: CALL "
            "system.rewrite_data_files with delete-file-threshold 1) or pick an earlier "
            "snapshot with input.version"
        )
    columns: list[str] = []
    files = []
    for task in tasks:
        data = task.file
        if data.file_format != FileFormat.PARQUET:
            raise CorpusError(
                f"Iceberg data file {data.file_path} is {data.file_format.name}: batchmt reads "
                "Parquet data files only; rewrite the table as Parquet"
            )
        partition: dict[str, str] = {}
        for position, field in enumerate(specs[data.spec_id].fields):
            if not isinstance(field.transform, IdentityTransform):
                continue
            source = schema.find_field(field.source_id)
            if source.name not in columns:
                columns.append(source.name)
            value = data.partition[position]
            if value is not None:
                partition[source.name] = field.transform.to_human_string(source.field_type, value)
        files.append(InputFile(_local(data.file_path), partition, int(data.record_count)))
    source = {
        "format": "iceberg",
        "version": snapshot.snapshot_id,
        "location": table.location(),
        "table": input_spec.table,
    }
    return Listing(ordered(files, columns), columns, source)


def data_file_paths(input_spec: InputSpec, snapshot_id: int) -> set[str]:
    """The data files of an earlier snapshot (an increment's start), named as list_iceberg
    names them; nothing is refused, as no file is read."""
    where = input_spec.table or input_spec.path
    table = _load_table(input_spec)
    snapshot = _snapshot(table, snapshot_id, where, "input.since")
    tasks = table.scan(snapshot_id=snapshot.snapshot_id).plan_files()
    return {_local(task.file.file_path) for task in tasks}


def snapshot_at(input_spec: InputSpec, when_ms: int) -> int | None:
    """The snapshot that was current at `when_ms` (the table's snapshot log); None when the
    table had none yet."""
    snapshot = _load_table(input_spec).snapshot_as_of_timestamp(when_ms)
    return None if snapshot is None else int(snapshot.snapshot_id)
