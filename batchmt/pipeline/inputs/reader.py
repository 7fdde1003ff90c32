"""Reading one shard inside a worker: exactly the rows its slices name, with the plan's schema.

Each file is opened once and only the named row groups are read, so a worker's memory is
bounded by its shard, not the corpus.

Bad data costs rows, never the shard: a row group that cannot be read whole is read column
by column, and the rows of a column that still cannot be read get a per-row error (the
value is null in the output); text that is not valid UTF-8 is repaired for the output and
its rows get an error too. Only an unreadable id column fails the shard: without ids the
rows cannot be tracked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batchmt.pipeline.errors import BatchmtError
from batchmt.pipeline.inputs.corpus import input_file_fs
from batchmt.pipeline.inputs.shards import RowSlice, Shard, schema_from_text
from batchmt.pipeline.spec import InputSpec
from batchmt.pipeline.storage.fs import open_input, with_retries

_MAX_REASON_CHARS = 200


class ShardReadError(BatchmtError, RuntimeError):
    """The shard's rows cannot be tracked (its id column is unreadable)."""


@dataclass(frozen=True)
class ShardData:
    """A shard's rows and, per row, why its own data is unusable (None: usable).

    A row with an error keeps its place (and its id) in the table; the worker writes it
    with status `invalid` and this error instead of translating it.
    """

    table: pa.Table
    row_errors: list[str | None]


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:_MAX_REASON_CHARS]


def _read_row_group(
    parquet: pq.ParquetFile, path: str, piece: RowSlice, id_column: str
) -> tuple[pa.Table, list[str | None]]:
    """The slice's rows; when the row group cannot be read whole, column by column."""
    try:
        table = parquet.read_row_group(piece.row_group)
        return table.slice(piece.offset, piece.length), [None] * piece.length
    except (OSError, pa.ArrowException) as whole:
        failure = whole
    names = parquet.schema_arrow.names
    arrays: list[pa.ChunkedArray | pa.Array] = []
    broken: list[str] = []
    for name in names:
        try:
            column = parquet.read_row_group(piece.row_group, columns=[name]).column(0)
            arrays.append(column.slice(piece.offset, piece.length))
        except (OSError, pa.ArrowException) as exc:
            if name == id_column:
                raise ShardReadError(
                    f"id column {id_column!r} of {path} row group {piece.row_group} cannot be "
                    f"read ({_reason(exc)}); its rows cannot be tracked: repair or remove the "
                    "file and rerun"
                ) from exc
            broken.append(f"{name!r} ({_reason(exc)})")
            arrays.append(pa.nulls(piece.length, parquet.schema_arrow.field(name).type))
    if not broken:  # the whole read failed, every column alone worked: keep going
        broken.append(f"row group ({_reason(failure)})")
    error = (
        f"unreadable data in {path} row group {piece.row_group}: column(s) "
        f"{', '.join(broken)}; those values are null in the output"
    )
    table = pa.Table.from_arrays(arrays, names=names)
    return table, [error] * piece.length


def _read_slices(
    input_spec: InputSpec, path: str, slices: Iterable[RowSlice]
) -> list[tuple[pa.Table, list[str | None]]]:
    fs, inner = input_file_fs(input_spec, path)  # lake tables' files may be URLs
    id_column = input_spec.id_column

    def read() -> list[tuple[pa.Table, list[str | None]]]:
        with open_input(fs, inner) as f:
            parquet = pq.ParquetFile(f, pre_buffer=True)
            out = []
            for piece in slices:
                table, errors = _read_row_group(parquet, path, piece, id_column)
                if table.num_rows != piece.length:  # the file changed since it was planned
                    raise ShardReadError(
                        f"{path} row group {piece.row_group} has {table.num_rows} of the "
                        f"{piece.length} rows the plan names from row {piece.offset}: the "
                        "input changed since the job was planned; start over with --set "
                        "output.overwrite=true"
                    )
                for key, value in piece.partition.items():
                    if key not in table.column_names:
                        table = table.append_column(
                            key, pa.array([value] * table.num_rows, pa.string())
                        )
                out.append((table, errors))
            return out

    return with_retries(f"read {path}", read)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder/cast to `schema`; columns a file lacks become nulls (files may differ)."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            columns.append(column if column.type == field.type else column.cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _repair_text(
    array: pa.Array, name: str, errors: list[str | None], offset: int, keep: bool = False
) -> pa.Array:
    """Invalid UTF-8 replaced by U+FFFD, the row's error saying where and what it was.

    `keep`: record the errors but return the values unchanged (the id column: an id must
    come back exactly as it came in, or the row could not be matched to its input).
    """
    values: list[str | None] = []
    for k, raw in enumerate(array.cast(pa.large_binary()).to_pylist()):
        if raw is None:
            values.append(None)
            continue
        try:
            values.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.end].hex()
            written = "written as it came" if keep else "written with U+FFFD in their place"
            _add_error(
                errors,
                offset + k,
                f"column {name!r} is not valid UTF-8 (bytes 0x{bad} at byte {exc.start}); "
                f"{written}",
            )
            values.append(raw.decode("utf-8", "replace"))
    return array if keep else pa.array(values, array.type)


def _null_invalid_rows(
    array: pa.Array, name: str, errors: list[str | None], offset: int
) -> pa.Array:
    """Nested values (lists, structs) that fail validation become null, with an error."""
    bad = []
    for k in range(len(array)):
        try:
            array.take(pa.array([k], pa.int64())).validate(full=True)  # a slice shares children
            bad.append(False)
        except pa.ArrowInvalid as exc:
            message = f"column {name!r} holds invalid data ({_reason(exc)}); written as null"
            _add_error(errors, offset + k, message)
            bad.append(True)
    return pc.if_else(pa.array(bad), pa.nulls(len(array), array.type), array)


def _add_error(errors: list[str | None], row: int, message: str) -> None:
    errors[row] = message if errors[row] is None else f"{errors[row]}; {message}"


def check_values(table: pa.Table, errors: list[str | None], id_column: str = "") -> pa.Table:
    """Validate every value (UTF-8 above all); repair or null what is invalid, per row.

    Readers of the output must never meet an undecodable value, and one bad value must not
    stop the shard, so the check is here, once, on the rows as read.
    """
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        chunks = []
        offset = 0
        for chunk in column.chunks:
            try:
                chunk.validate(full=True)
            except pa.ArrowInvalid:
                chunk = _repair_chunk(chunk, field.name, errors, offset, field.name == id_column)
            chunks.append(chunk)
            offset += len(chunk)
        columns.append(pa.chunked_array(chunks, field.type))
    return pa.Table.from_arrays(columns, schema=table.schema)


def _repair_chunk(
    chunk: pa.Array, name: str, errors: list[str | None], offset: int, keep: bool
) -> pa.Array:
    t = chunk.type
    if pa.types.is_dictionary(t) and _is_text(t.value_type):
        decoded = _repair_text(chunk.dictionary_decode(), name, errors, offset, keep)
        return chunk if keep else decoded.cast(t)
    if _is_text(t):
        return _repair_text(chunk, name, errors, offset, keep)
    return _null_invalid_rows(chunk, name, errors, offset)


def read_shard_data(shard: Shard, input_spec: InputSpec) -> ShardData:
    """Exactly the rows the shard names, in plan order, with the plan's schema, and the
    per-row errors of data that could not be read or decoded.

    Partition columns are added back from the slice, so every shard has the same columns.
    """
    schema = schema_from_text(shard.schema) if shard.schema else None
    parts: list[tuple[pa.Table, list[str | None]]] = []
    i = 0
    slices = shard.slices
    while i < len(slices):
        j = i
        while j < len(slices) and slices[j].path == slices[i].path:
            j += 1
        parts.extend(_read_slices(input_spec, slices[i].path, slices[i:j]))
        i = j
    errors = [e for _, part_errors in parts for e in part_errors]
    tables = [t for t, _ in parts]
    if schema is not None:
        tables = [_conform(t, schema) for t in tables]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
    else:
        table = pa.concat_tables(tables, promote_options="permissive")
    return ShardData(check_values(table, errors, input_spec.id_column), errors)


def read_shard(shard: Shard, input_spec: InputSpec) -> pa.Table:
    """The shard's rows only (invalid values already repaired or nulled); see read_shard_data."""
    return read_shard_data(shard, input_spec).table
