"""Reading input corpora: a Parquet file, a folder (hive partitions), or a glob; any fsspec URL.

A Delta or Iceberg table is never read here as loose files (its folder holds the files of
every version, removed ones included): `detect_format` recognises it and
pipeline/inputs/sources/ lists exactly the live files of one table version.

The driver only lists files, reads footers (see shards.py) and checks the schema here; rows
are read by workers, one shard at a time (see shard_reader.py), so a corpus far larger than
memory is fine.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import unquote

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds

from batchmt.pipeline import columns
from batchmt.pipeline.columns import written_columns
from batchmt.pipeline.errors import UserError
from batchmt.pipeline.spec import InputSpec
from batchmt.pipeline.storage.fs import open_fs, with_retries
from batchmt.pipeline.storage.paths import where

_GLOB_CHARS = re.compile(r"[*?\[]")


class CorpusError(UserError, ValueError):
    """An input that cannot be read as asked; the message names the fix."""


# ----------------------------------------------------------------------------------------
# Listing


def _is_hidden(relative: str) -> bool:
    """Spark/Hive markers (_SUCCESS, _metadata, .crc) and temp files are not data."""
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)


def _relative(path: str, base: str) -> str:
    base = base.rstrip("/")
    return (
        path[len(base) + 1 :] if base and path.startswith(base + "/") else path.rsplit("/", 1)[-1]
    )


def _glob_base(pattern: str) -> str:
    """The folder above the first glob character: where partition folders start."""
    parts = pattern.split("/")
    fixed = []
    for part in parts[:-1]:
        if _GLOB_CHARS.search(part):
            break
        fixed.append(part)
    return "/".join(fixed)


def input_base(path: str) -> str:
    """The folder an input reads under: a glob's fixed prefix, else the path itself."""
    return _glob_base(path) if _GLOB_CHARS.search(path) else path.rstrip("/")


def list_files(fs: fsspec.AbstractFileSystem, path: str, url: str) -> tuple[list[str], str]:
    """Data files under `path` (file, folder or glob), sorted, and the partition base folder."""
    if _GLOB_CHARS.search(path):
        base = _glob_base(path)
        found = with_retries(f"glob {url}", lambda: fs.glob(path, detail=True))
        files = [name for name, info in found.items() if info.get("type") != "directory"]
    else:
        try:
            info = with_retries(f"stat {url}", lambda: fs.info(path))
        except FileNotFoundError:
            raise CorpusError(
                f"input.path {url} not found{where(url)}; check the path and its storage_options"
            ) from None
        if info.get("type") == "directory":
            base = path.rstrip("/")
            files = list(with_retries(f"list {url}", lambda: fs.find(path)))
        else:
            return [str(info.get("name", path))], path.rsplit("/", 1)[0] if "/" in path else ""
    files = sorted(f for f in files if not _is_hidden(_relative(f, base)))
    if not files:
        raise CorpusError(
            f"input.path {url} matched no data files (hidden and _-prefixed files are skipped)"
        )
    return files, base


InputFormat = Literal["parquet", "delta", "iceberg"]


def _where(input_spec: InputSpec) -> str:
    """How messages name the input: its path, or an Iceberg catalog table's identifier."""
    return input_spec.path or input_spec.table or ""


def detect_format(input_spec: InputSpec) -> InputFormat:
    """What `input.format: auto` reads: a folder with `_delta_log/` is a Delta table, one
    with `metadata/*.metadata.json` (or input.table + catalog) an Iceberg table; else files."""
    if input_spec.format != "auto":
        return input_spec.format
    if input_spec.table is not None:
        return "iceberg"
    if _GLOB_CHARS.search(input_spec.path):
        return "parquet"
    fs, path = open_fs(input_spec.path, input_spec.storage_options)
    root = path.rstrip("/")
    if with_retries(f"stat {input_spec.path}/_delta_log", lambda: fs.isdir(f"{root}/_delta_log")):
        return "delta"
    found = with_retries(
        f"list {input_spec.path}/metadata", lambda: fs.glob(f"{root}/metadata/*.metadata.json")
    )
    return "iceberg" if found else "parquet"


def input_file_fs(input_spec: InputSpec, path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and inner path of an input data file as a plan names it.

    Files of Parquet inputs are named inside input.path's filesystem (as they always were);
    files of lake tables may live anywhere the table's log points, so remote ones are named
    by URL (s3://bucket/key) and opened with input.storage_options (else an Iceberg
    catalog's S3 properties); local ones by path.
    """
    options = input_spec.storage_options or _catalog_options(input_spec)
    if "://" in path:
        return open_fs(path, options)
    fs, _ = open_fs(input_spec.path or "/", options)
    return fs, path


# pyiceberg FileIO property -> fsspec (s3fs) option: a catalog's S3 settings also open its
# data files when input.storage_options is empty.
_FILEIO_TO_FSSPEC = {
    "s3.endpoint": "endpoint_url",
    "s3.access-key-id": "key",
    "s3.secret-access-key": "secret",
    "s3.session-token": "token",
}


def _catalog_options(input_spec: InputSpec) -> dict[str, Any]:
    properties = input_spec.catalog.properties if input_spec.catalog else {}
    out: dict[str, Any] = {
        o: properties[p] for p, o in _FILEIO_TO_FSSPEC.items() if p in properties
    }
    if "s3.region" in properties:
        out["client_kwargs"] = {"region_name": properties["s3.region"]}
    return out


def hive_partitions(
    input_spec: InputSpec,
) -> tuple[list[tuple[str, dict[str, str]]], list[str]]:
    """[(file, hive partition values)] sorted by file, and the partition column names, from
    the listing alone: no file is opened (a filter must be able to skip files unread)."""
    fs, path = open_fs(input_spec.path, input_spec.storage_options)
    files, base = list_files(fs, path, input_spec.path)
    partitioning = _hive_partitioning(files, base)
    if partitioning is None:
        return [(f, {}) for f in files], []
    out = []
    for file in files:
        folder = _relative(file, base).rpartition("/")[0]  # as pyarrow parses: no file name
        keys = ds.get_partition_keys(partitioning.parse(folder + "/"))
        out.append((file, {k: str(v) for k, v in sorted(keys.items()) if v is not None}))
    return out, list(partitioning.schema.names)


def _hive_partitioning(files: list[str], base: str) -> ds.Partitioning | None:
    """Hive partitioning over every `key=value` folder name under `base`, keys as strings.

    Partition columns are always strings: inferring types per run could turn `part=007`
    into 7 on one run and keep it on another, and would differ between shards.
    """
    keys: dict[str, None] = {}
    for file in files:
        for part in _relative(file, base).split("/")[:-1]:
            key, sep, _ = part.partition("=")
            if sep and key:
                keys.setdefault(unquote(key), None)
    if not keys:
        return None
    return ds.partitioning(pa.schema([(key, pa.string()) for key in keys]), flavor="hive")


def open_dataset(input_spec: InputSpec) -> ds.Dataset:
    """A pyarrow Dataset over the input files (sorted), with hive partition columns as strings.

    Only for Parquet inputs: a Delta or Iceberg table read this way would return the rows
    of removed files too, so it is refused (pipeline/inputs/plan.py reads tables).
    """
    kind = detect_format(input_spec)
    if kind != "parquet":
        raise CorpusError(
            f"input {_where(input_spec)} is a {kind} table: it is read "
            "through its log, not as loose Parquet files (use pipeline.input_plan)"
        )
    fs, path = open_fs(input_spec.path, input_spec.storage_options)
    files, base = list_files(fs, path, input_spec.path)
    partitioning = _hive_partitioning(files, base)
    try:
        return ds.dataset(
            files,
            filesystem=fs,
            format="parquet",
            partitioning=partitioning,
            partition_base_dir=base or None,
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorpusError(f"cannot read {input_spec.path} as Parquet: {exc}") from None


def partition_fields(dataset: ds.Dataset) -> list[str]:
    """Names of the hive partition columns of a dataset made by `open_dataset`."""
    partitioning = dataset.partitioning
    return list(partitioning.schema.names) if partitioning is not None else []


# ----------------------------------------------------------------------------------------
# Schema checks


def without_dictionaries(schema: pa.Schema) -> pa.Schema:
    """Dictionary-encoded columns as their value type, and view types (string_view,
    binary_view) as plain ones: one file written with pandas categoricals and one without,
    or a Delta file rewritten by delta-rs (which writes views) and an older one, hold the
    same column, and unify as such (workers cast)."""
    fields = []
    for f in schema:
        t = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        if _is_string_view(t):
            t = pa.string()
        elif _is_binary_view(t):
            t = pa.binary()
        fields.append(f.with_type(t))
    return pa.schema(fields, metadata=schema.metadata)


_OPTIONAL_TYPES = {
    columns.CONTEXT: "list<string> (an explicit context window per row)",
    columns.GLOSSARY: "list<struct<source: string, target: string>> (per-row glossary terms)",
    columns.DOC_ID: "a scalar (the document a row belongs to)",
    columns.SEG_IDX: "an integer (the row's position in its document)",
    columns.REFERENCE: "string (a reference translation)",
}


# View types exist from pyarrow 16 on; the project supports 15.
_is_string_view = getattr(pa.types, "is_string_view", lambda t: False)
_is_list_view = getattr(pa.types, "is_list_view", lambda t: False)
_is_binary_view = getattr(pa.types, "is_binary_view", lambda t: False)


def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or _is_string_view(t))


def _is_list(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or _is_list_view(t))


def _is_scalar(t: pa.DataType) -> bool:
    return not pa.types.is_nested(t)


def _is_text(t: pa.DataType) -> bool:
    """Text as the worker reads it: strings, also dictionary-encoded (Spark and pandas
    categoricals write them; the worker casts them to plain strings)."""
    if pa.types.is_dictionary(t):
        return _is_string(t.value_type)
    return _is_string(t) or pa.types.is_null(t)


def _optional_ok(name: str, t: pa.DataType) -> bool:
    if pa.types.is_null(t):
        return True  # an all-null column written without a type: no values to misread
    if name == columns.CONTEXT:
        return _is_list(t) and (_is_string(t.value_type) or pa.types.is_null(t.value_type))
    if name == columns.GLOSSARY:
        if not (_is_list(t) and pa.types.is_struct(t.value_type)):
            return False
        struct = t.value_type
        names = {struct.field(i).name: struct.field(i).type for i in range(struct.num_fields)}
        return all(k in names and _is_string(names[k]) for k in ("source", "target"))
    if name == columns.DOC_ID:
        return _is_scalar(t)
    if name == columns.SEG_IDX:
        return pa.types.is_integer(t)
    if name == columns.REFERENCE:
        return _is_string(t)
    return True


def check_schema(dataset: ds.Dataset | pa.Schema, input_spec: InputSpec) -> None:
    """Raise CorpusError (one line) when the input lacks a required column, has a bad type,
    or has a column batchmt writes.

    Called on the plan's schema unified over every input file (shards.py), so a column that
    only a later file has is checked like any other.
    """
    schema = dataset if isinstance(dataset, pa.Schema) else dataset.schema
    found = ", ".join(schema.names)
    duplicated = sorted({name for name in schema.names if schema.names.count(name) > 1})
    if duplicated:
        raise CorpusError(
            f"input {_where(input_spec)} has column(s) {', '.join(duplicated)} more than once "
            "(a partition folder named like a file column?); rename one of them"
        )
    # An input column of the same name would be overwritten, and an output with two
    # columns of one name cannot be read: refuse it up front.
    clash = [c for c in written_columns(input_spec.translation_column) if c in schema.names]
    if clash:
        raise CorpusError(
            f"input {_where(input_spec)} already has column(s) {', '.join(clash)}, which batchmt "
            "writes; rename them in the input (they would be overwritten)"
        )
    for column, key in (
        (input_spec.id_column, "id_column"),
        (input_spec.text_column, "text_column"),
    ):
        if schema.get_field_index(column) < 0:
            raise CorpusError(
                f"input column {column!r} not found in {_where(input_spec)} (columns: {found}); "
                f"set input.{key}"
            )
    id_type = schema.field(input_spec.id_column).type
    if not _is_scalar(id_type):
        raise CorpusError(
            f"input column {input_spec.id_column!r} has type {id_type}; ids must be scalars "
            "(string or integer)"
        )
    text_type = schema.field(input_spec.text_column).type
    if not _is_text(text_type):
        raise CorpusError(
            f"input column {input_spec.text_column!r} has type {text_type}; expected string "
            "(set input.text_column to the text column)"
        )
    for name, expected in _OPTIONAL_TYPES.items():
        index = schema.get_field_index(name)
        if index >= 0 and not _optional_ok(name, schema.field(index).type):
            raise CorpusError(
                f"input column {name!r} has type {schema.field(index).type}; expected {expected} "
                "or rename the column"
            )
