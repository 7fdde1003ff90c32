"""Reading one shard inside a worker: exactly the rows its slices name, with the plan's schema.

Each file is opened once and only the named row groups are read, so a worker's memory is
bounded by its shard, not the corpus.
"""

from __future__ import annotations

from collections.abc import Iterable

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from batchmt.pipeline.shards import RowSlice, Shard, schema_from_text
from batchmt.pipeline.spec import InputSpec
from batchmt.pipeline.storage import open_fs, open_input, with_retries


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


def _read_slices(
    fs: fsspec.AbstractFileSystem, path: str, slices: Iterable[RowSlice]
) -> list[pa.Table]:
    def read() -> list[pa.Table]:
        with open_input(fs, path) as f:
            parquet = pq.ParquetFile(f, pre_buffer=True)
            out = []
            for piece in slices:
                table = parquet.read_row_group(piece.row_group).slice(piece.offset, piece.length)
                for key, value in piece.partition.items():
                    if key not in table.column_names:
                        table = table.append_column(
                            key, pa.array([value] * table.num_rows, pa.string())
                        )
                out.append(table)
            return out

    return with_retries(f"read {path}", read)


def read_shard(shard: Shard, input_spec: InputSpec) -> pa.Table:
    """Exactly the rows the shard names, in plan order, with the plan's schema.

    Partition columns are added back from the slice, so every shard has the same columns.
    """
    fs, _path = open_fs(input_spec.path, input_spec.storage_options)
    schema = schema_from_text(shard.schema) if shard.schema else None
    tables: list[pa.Table] = []
    i = 0
    slices = shard.slices
    while i < len(slices):
        j = i
        while j < len(slices) and slices[j].path == slices[i].path:
            j += 1
        tables.extend(_read_slices(fs, slices[i].path, slices[i:j]))
        i = j
    if schema is not None:
        tables = [_conform(t, schema) for t in tables]
        if not tables:
            return schema.empty_table()
        return pa.concat_tables(tables)
    return pa.concat_tables(tables, promote_options="permissive")
