"""Deterministic shard planning from Parquet metadata.

A plan is a pure function of the input files' footers (row-group row counts) and, when a
`doc_id` column exists, of that one column: the same input and `rows_per_shard` always give
the same shards, so a resumed job can trust `_manifest.json`. Shards never split a document
(context windows need the whole document in one place); a row group bigger than a shard is
cut by row offset.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from batchmt.pipeline.columns import DOC_ID
from batchmt.pipeline.inputs.corpus import (
    CorpusError,
    check_schema,
    input_file_fs,
    without_dictionaries,
)
from batchmt.pipeline.inputs.sources.listing import InputFile, Listing
from batchmt.pipeline.spec import InputSpec, ShardingSpec
from batchmt.pipeline.storage.fs import open_input, with_retries

log = logging.getLogger(__name__)

PLAN_VERSION = 1
# Footers (and doc_id columns) are read concurrently: on S3 a listing of thousands of files
# would otherwise spend minutes in round trips.
_READ_THREADS = 8
# Shard ids become file names under the output (data/part-<id>.parquet, _completions/<id>):
# digits only, so an id read back from a manifest can never name a path elsewhere.
SHARD_ID_PATTERN = re.compile(r"[0-9]{5,12}")
# What `fs.info()` may tell about a file that changes when the file is rewritten; each
# backend gives some of these (local: size, mtime; S3: size, ETag, VersionId, LastModified).
_IDENTITY_KEYS = ("size", "mtime", "ETag", "etag", "VersionId", "LastModified", "generation")


def schema_to_text(schema: pa.Schema) -> str:
    """A schema as plain text (base64 Arrow IPC) so it can travel in JSON and to actors."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_text(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


@dataclass(frozen=True)
class RowSlice:
    """Rows [offset, offset + length) of one row group of one file."""

    path: str
    row_group: int
    offset: int
    length: int
    partition: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Shard:
    """The unit of work sent to an actor: small, picklable, self-contained.

    `schema` (see schema_to_text) is the plan's unified schema so every shard reads back
    with the same columns; it is stored once per plan in JSON.
    """

    shard_id: str
    slices: list[RowSlice]
    num_rows: int
    schema: str = ""


@dataclass(frozen=True)
class Plan:
    shards: list[Shard]
    num_rows: int
    columns: list[str]
    # Content hash of the plan (files, row groups, cuts, schema): tells whether the input
    # changed since a manifest was written. The *spec* fingerprint lives in the manifest.
    fingerprint: str
    input_path: str
    schema: str = ""
    noncontiguous_documents: int = 0
    # {file: identity}: what the input files were when planned (see file_identity). A
    # resume compares it with the files as they are now and refuses if one was rewritten.
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # How the files were chosen (pipeline/inputs/sources/listing.py): {"format": parquet | delta |
    # iceberg, "version": the pinned Delta version / Iceberg snapshot id (None for Parquet),
    # "filter": input.filter, "files"/"files_skipped"/"partitions"/"partitions_skipped":
    # what the filter kept, and for tables "location" (and "table"); with input.since
    # "since": the increment (pipeline/inputs/sources/increments.py: mode, from, to, files and rows
    # new / already seen, and for Parquet the seen-set the next run starts from)}. A resume
    # plans the same version again. {} in manifests written before it existed (Parquet).
    source: dict[str, Any] = field(default_factory=dict)
    # The input's partition columns (hive folders, Delta partition columns, Iceberg
    # identity partitions): every slice's `partition` holds their values as text (a null
    # value is left out).
    partition_columns: list[str] = field(default_factory=list)
    # The columns no shard spans two values of: output.partition_by, else the input's
    # partition columns; the output is partitioned by them.
    output_partitions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for shard in data["shards"]:
            shard.pop("schema")
        data["version"] = PLAN_VERSION
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("version") != PLAN_VERSION:
            raise ValueError(
                f"unsupported plan version {data.get('version')!r} (expected {PLAN_VERSION})"
            )
        schema = data.get("schema", "")
        shards = [
            Shard(
                shard_id=s["shard_id"],
                slices=[RowSlice(**piece) for piece in s["slices"]],
                num_rows=s["num_rows"],
                schema=schema,
            )
            for s in data["shards"]
        ]
        return cls(
            shards=shards,
            num_rows=data["num_rows"],
            columns=list(data["columns"]),
            fingerprint=data["fingerprint"],
            input_path=data["input_path"],
            schema=schema,
            noncontiguous_documents=data.get("noncontiguous_documents", 0),
            inputs={str(k): dict(v) for k, v in (data.get("inputs") or {}).items()},
            source=dict(data.get("source") or {}),
            partition_columns=[str(c) for c in data.get("partition_columns") or []],
            output_partitions=[str(c) for c in data.get("output_partitions") or []],
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))


# ----------------------------------------------------------------------------------------
# Reading footers and document boundaries

# (offset, length, document) runs of one row group; document None = rows without a doc_id,
# which can be cut anywhere.
_Run = tuple[int, int, Any]


@dataclass
class _FileInfo:
    path: str
    partition: dict[str, str]
    schema: pa.Schema
    row_groups: list[int]
    runs: list[list[_Run]] | None  # per row group, when the corpus has doc_id
    identity: dict[str, Any] = field(default_factory=dict)


def file_identity(info: dict[str, Any], row_groups: list[int]) -> dict[str, Any]:
    """A file's identity for the manifest: what `fs.info()` says (JSON-safe) plus the
    row-group sizes the plan's slices rely on."""
    out: dict[str, Any] = {}
    for key in _IDENTITY_KEYS:
        value = info.get(key)
        if value is not None:
            out[key] = value if isinstance(value, (int, float, str)) else str(value)
    out["row_groups"] = list(row_groups)
    return out


def _document_runs(column: pa.ChunkedArray | pa.Array) -> list[_Run]:
    """Maximal runs of equal doc_id, found with vectorised compares (no per-row Python)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if isinstance(array, pa.ExtensionArray):  # UUIDs: compare kernels take the storage
        array = array.storage
    n = len(array)
    if n == 0:
        return []
    if n == 1:
        starts = [0]
    else:
        head, tail = array.slice(0, n - 1), array.slice(1)
        changed = pc.fill_null(pc.not_equal(tail, head), True)
        both_null = pc.and_(pc.is_null(tail), pc.is_null(head))
        changed = pc.and_not(changed, both_null)
        starts = [0] + [i + 1 for i in pc.indices_nonzero(changed).to_pylist()]
    values = array.take(pa.array(starts, pa.int64())).to_pylist()
    ends = [*starts[1:], n]
    return [(s, e - s, v) for s, e, v in zip(starts, ends, values, strict=True)]


def _read_file_info(
    input_spec: InputSpec, path: str, partition: dict[str, str], with_docs: bool
) -> _FileInfo:
    fs, inner = input_file_fs(input_spec, path)

    def read() -> _FileInfo:
        with open_input(fs, inner) as f:
            parquet = pq.ParquetFile(f)
            meta = parquet.metadata
            schema = parquet.schema_arrow
            row_groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            runs = None
            if with_docs:
                runs = []
                for i, rows in enumerate(row_groups):
                    if DOC_ID in schema.names and rows:
                        column = parquet.read_row_group(i, columns=[DOC_ID]).column(0)
                        runs.append(_document_runs(column))
                    else:
                        runs.append([(0, rows, None)] if rows else [])
            identity = file_identity(fs.info(inner), row_groups)
            return _FileInfo(path, partition, schema, row_groups, runs, identity)

    try:
        return with_retries(f"read footer {path}", read)
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CorpusError(f"cannot read Parquet footer of {path}: {exc}") from None


def _fragments(dataset: ds.Dataset) -> list[tuple[str, dict[str, str]]]:
    out = []
    for fragment in dataset.get_fragments():
        keys = ds.get_partition_keys(fragment.partition_expression)
        partition = {k: str(v) for k, v in sorted(keys.items()) if v is not None}
        out.append((fragment.path, partition))
    return sorted(out)


def _as_listing(dataset: ds.Dataset) -> Listing:
    """A dataset from corpus.open_dataset, as the listing pipeline/sources would give."""
    names = list(dataset.partitioning.schema.names) if dataset.partitioning is not None else []
    files = [InputFile(path, partition) for path, partition in _fragments(dataset)]
    return Listing(files, names, {"format": "parquet", "version": None})


def _first_schema(input_spec: InputSpec, listing: Listing) -> pa.Schema:
    """The first file's schema: whether the corpus has doc_id (as a dataset would say)."""
    fs, path = input_file_fs(input_spec, listing.files[0].path)

    def read() -> pa.Schema:
        with open_input(fs, path) as f:
            return pq.ParquetFile(f).schema_arrow

    try:
        return with_retries(f"read footer {path}", read)
    except FileNotFoundError as exc:
        raise _gone(listing, exc) from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorpusError(f"cannot read Parquet footer of {path}: {exc}") from None


def _read_all(
    input_spec: InputSpec, listing: Listing, files: list[tuple[str, dict[str, str]]], docs: bool
) -> list[_FileInfo]:
    try:
        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            return list(pool.map(lambda f: _read_file_info(input_spec, f[0], f[1], docs), files))
    except FileNotFoundError as exc:
        raise _gone(listing, exc) from None


def _gone(listing: Listing, exc: FileNotFoundError) -> Exception:
    """A table's planned file that is not there: its version was vacuumed (say so)."""
    source = listing.source
    if source.get("format") not in ("delta", "iceberg"):
        return exc
    return CorpusError(
        f"data file {exc.filename or exc} of {source['format']} table "
        f"{source.get('table') or source.get('location')} version {source.get('version')} "
        "is gone (VACUUM / expire_snapshots remove the files of old versions); plan a "
        "version whose files exist (input.version), or start over with --set "
        "output.overwrite=true when resuming"
    )


# ----------------------------------------------------------------------------------------
# Packing rows into shards


class _Packer:
    """Greedy packing of row runs into shards of about `target` rows, in input order.

    A shard never spans two values of the `split_on` partition columns: each output shard
    file then belongs to exactly one output partition.
    """

    def __init__(self, target: int, split_on: Sequence[str] = ()) -> None:
        self.target = target
        self.split_on = tuple(split_on)
        self.shards: list[list[RowSlice]] = []
        self.current: list[RowSlice] = []
        self.rows = 0
        self.key: tuple[str | None, ...] | None = None

    def enter(self, partition: dict[str, str]) -> None:
        """Close the current shard when rows of another output partition come next."""
        key = tuple(partition.get(name) for name in self.split_on)
        if key != self.key:
            self.close()
            self.key = key

    def close(self) -> None:
        if self.current:
            self.shards.append(self.current)
            self.current, self.rows = [], 0

    def add_free(self, info: _FileInfo, row_group: int, offset: int, length: int) -> None:
        """Rows that may be cut anywhere: fill the current shard exactly to the target."""
        self.enter(info.partition)
        while length > 0:
            take = min(length, self.target - self.rows)
            self.current.append(RowSlice(info.path, row_group, offset, take, info.partition))
            self.rows += take
            offset += take
            length -= take
            if self.rows >= self.target:
                self.close()

    def add_document(self, pieces: list[RowSlice]) -> None:
        """A whole document: start a new shard if it would overflow this one; a document
        larger than the target becomes its own (oversized) shard."""
        size = sum(p.length for p in pieces)
        self.enter(pieces[0].partition)
        if self.rows and self.rows + size > self.target:
            self.close()
        self.current.extend(pieces)
        self.rows += size
        if self.rows >= self.target:
            self.close()


def _pack_documents(files: list[_FileInfo], packer: _Packer) -> int:
    """Pack by document; return how many documents appear in more than one place."""
    pending: list[RowSlice] = []
    pending_doc: Any = None
    seen: set[Any] = set()
    reappeared: set[Any] = set()

    def flush() -> None:
        nonlocal pending
        if pending:
            packer.add_document(pending)
            pending = []

    for info in files:
        assert info.runs is not None
        for rg, runs in enumerate(info.runs):
            for offset, length, doc in runs:
                if doc is None:
                    flush()
                    pending_doc = None
                    packer.add_free(info, rg, offset, length)
                    continue
                piece = RowSlice(info.path, rg, offset, length, info.partition)
                if pending and doc == pending_doc:  # the document continues across a boundary
                    pending.append(piece)
                    continue
                flush()
                if doc in seen:
                    reappeared.add(doc)
                seen.add(doc)
                pending, pending_doc = [piece], doc
    flush()
    return len(reappeared)


def _merge_adjacent(slices: list[RowSlice]) -> Iterator[RowSlice]:
    """Join consecutive runs of the same row group (documents are packed run by run)."""
    last: RowSlice | None = None
    for piece in slices:
        if (
            last is not None
            and piece.path == last.path
            and piece.row_group == last.row_group
            and piece.offset == last.offset + last.length
        ):
            last = RowSlice(
                last.path, last.row_group, last.offset, last.length + piece.length, last.partition
            )
            continue
        if last is not None:
            yield last
        last = piece
    if last is not None:
        yield last


def _unified_schema(files: list[_FileInfo], input_spec: InputSpec) -> pa.Schema:
    for info in files:
        for column, key in (
            (input_spec.id_column, "id_column"),
            (input_spec.text_column, "text_column"),
        ):
            if column not in info.schema.names:
                raise CorpusError(
                    f"input file {info.path} has no column {column!r} (columns: "
                    f"{', '.join(info.schema.names)}); fix the file or set input.{key}"
                )
    try:
        schemas = [f.schema for f in files]
        if len({str(s) for s in schemas}) > 1:  # files differ: dictionary or not is no conflict
            schemas = [without_dictionaries(s) for s in schemas]
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise CorpusError(
            f"input files of {input_spec.path or input_spec.table} have incompatible schemas: {exc}"
        ) from None
    schema = schema.remove_metadata()
    for name in dict.fromkeys(k for f in files for k in f.partition):
        if name not in schema.names:
            schema = schema.append(pa.field(name, pa.string()))
    return schema


def plan_shards(
    dataset: ds.Dataset | Listing,
    input_spec: InputSpec,
    sharding: ShardingSpec,
    split_on: Sequence[str] = (),
) -> Plan:
    """Cut the input into shards of about `sharding.rows_per_shard` rows, never across a
    change of the `split_on` partition columns (the output's partitions).

    `dataset`: a Parquet dataset (corpus.open_dataset) or the listing of an input source
    (pipeline/inputs/sources/). Reads only footers, plus the doc_id column when it exists; never
    the text.
    """
    listing = _as_listing(dataset) if isinstance(dataset, ds.Dataset) else dataset
    fragments = [(f.path, f.partition) for f in listing.files]
    if isinstance(dataset, ds.Dataset):
        with_docs = DOC_ID in dataset.schema.names
    else:
        # The first file's columns (with the partition columns) are checked before every
        # footer is read: a wrong column name fails at once, with the columns found.
        first = _first_schema(input_spec, listing)
        for name in listing.partition_columns:
            if name not in first.names:
                first = first.append(pa.field(name, pa.string()))
        check_schema(first, input_spec)
        with_docs = DOC_ID in first.names
    files = _read_all(input_spec, listing, fragments, with_docs)
    schema = _unified_schema(files, input_spec)
    check_schema(schema, input_spec)
    if DOC_ID in schema.names and not with_docs:
        # Only a later file has doc_id (the dataset's schema is the first file's): read the
        # document runs now, so no file is packed without them.
        files = _read_all(input_spec, listing, [(f.path, f.partition) for f in files], True)
    with_docs = DOC_ID in schema.names

    packer = _Packer(sharding.rows_per_shard, split_on)
    noncontiguous = 0
    if with_docs:
        noncontiguous = _pack_documents(files, packer)
    else:
        for info in files:
            for rg, rows in enumerate(info.row_groups):
                packer.add_free(info, rg, 0, rows)
    packer.close()
    if noncontiguous:
        log.warning(
            "%d documents of %s appear in more than one place (not contiguous); each part is "
            "sharded separately and its context window only sees that part",
            noncontiguous,
            input_spec.path,
        )

    schema_text = schema_to_text(schema)
    width = max(5, len(str(len(packer.shards) - 1)))
    shards = []
    for i, slices in enumerate(packer.shards):
        merged = list(_merge_adjacent(slices))
        shards.append(Shard(f"{i:0{width}d}", merged, sum(s.length for s in merged), schema_text))
    content: list[Any] = [input_spec.path, schema_text, [asdict(s) for s in shards]]
    if listing.source.get("format") not in (None, "parquet"):  # Parquet plans hash as before
        content.append([listing.source["format"], listing.source.get("version")])
    body = json.dumps(content, sort_keys=True, default=str)
    return Plan(
        shards=shards,
        num_rows=sum(s.num_rows for s in shards),
        columns=list(schema.names),
        fingerprint=hashlib.sha256(body.encode()).hexdigest()[:16],
        input_path=input_spec.path or input_spec.table or "",  # a catalog table: its name
        schema=schema_text,
        noncontiguous_documents=noncontiguous,
        inputs={info.path: info.identity for info in files},
        source=dict(listing.source),
        partition_columns=list(listing.partition_columns),
        output_partitions=list(split_on),
    )
