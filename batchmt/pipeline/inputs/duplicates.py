"""Ids the input holds more than once, reported by `batchmt plan` and the run summary.

Every row is still translated and written (the output has as many rows with that id as the
input, and `verify` agrees); but a user who meant the id column to be a key must hear of it
before joining the output back (issue #23, finding 10). Only the id column of the planned
rows is read, row group by row group; the count is exact (Arrow's hash aggregation over the
ids, about three times the id column's size in memory).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batchmt.pipeline.ids import JsonScalar, id_keys, ids_to_json
from batchmt.pipeline.inputs.corpus import input_file_fs
from batchmt.pipeline.inputs.shards import Plan, RowSlice
from batchmt.pipeline.spec import InputSpec
from batchmt.pipeline.storage.fs import open_input, with_retries


@dataclass
class DuplicateIds:
    ids: int = 0  # distinct ids that occur more than once
    rows: int = 0  # rows that carry such an id
    sample: list[JsonScalar] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ids": self.ids, "rows": self.rows, "sample": self.sample}

    def describe(self) -> str:
        """One line for the plan and the run summary ("" when every id is unique)."""
        if not self.ids:
            return ""
        shown = ", ".join(str(s) for s in self.sample)
        more = ", ..." if self.ids > len(self.sample) else ""
        return (
            f"{self.ids:,} id(s) occur more than once in the input ({self.rows:,} rows: "
            f"{shown}{more}); each row is translated and written, so the output repeats them "
            "too: make the id column unique if the output is joined back by id"
        )


def duplicate_ids(plan: Plan, input_spec: InputSpec, sample: int = 5) -> DuplicateIds:
    """The planned rows' ids that occur more than once (null ids are not counted)."""
    parts = [
        chunk
        for shard in plan.shards
        for piece in shard.slices
        for chunk in _slice_ids(piece, input_spec).chunks
    ]
    if not parts:
        return DuplicateIds()
    parts = [_plain(p) for p in parts]
    types = {p.type for p in parts}
    if len(types) > 1:  # files may differ (int32 / int64): compare as the widest
        try:
            target = pa.unify_schemas([pa.schema([("id", t)]) for t in types]).field("id").type
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            target = pa.string()  # no common type: compare as text, as verify does
        parts = [p.cast(target) for p in parts]
    ids = pa.chunked_array(parts)
    try:
        keyed = _groupable(ids)
        # One thread: Acero's threaded hash aggregate numbers the threads that run it
        # against a fixed capacity and failed once in CI with "thread index 11 is out of
        # range [0, 11)" (a job beside moto's S3 server); counting ids needs no pool.
        table = pa.table({"id": keyed})
        counts = table.group_by("id", use_threads=False).aggregate([("id", "count")])
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return _counted_in_python(ids, sample)  # an id type Arrow cannot group by
    repeated = counts.filter(pc.greater(counts.column("id_count"), 1))
    if repeated.num_rows == 0:
        return DuplicateIds()
    # The repeated rows in input order (few, normally), for the first ids they show.
    rows = ids.filter(pc.is_in(keyed, value_set=repeated.column("id").combine_chunks()))
    return DuplicateIds(
        ids=repeated.num_rows,
        rows=int(pc.sum(repeated.column("id_count")).as_py() or 0),
        sample=_first_distinct(rows, sample),
    )


def _plain(chunk: pa.Array) -> pa.Array:
    """Dictionary ids decoded and view types (a deltalake-written file's string_view) cast
    to their plain type, so chunks of different writers concatenate."""
    if pa.types.is_dictionary(chunk.type):
        chunk = chunk.dictionary_decode()
    if chunk.type == pa.string_view():
        return chunk.cast(pa.string())
    if chunk.type == pa.binary_view():
        return chunk.cast(pa.binary())
    return chunk


def _groupable(ids: pa.ChunkedArray) -> pa.ChunkedArray:
    """Extension ids (uuid) by their storage bytes: equal exactly when the ids are."""
    if isinstance(ids.type, pa.BaseExtensionType):
        return pa.chunked_array([c.storage for c in ids.chunks], ids.type.storage_type)
    return ids


def _counted_in_python(ids: pa.ChunkedArray, sample: int) -> DuplicateIds:
    keys = id_keys(ids)
    counts = Counter(k for k in keys if k is not None)
    repeated = {k: n for k, n in counts.items() if n > 1}
    if not repeated:
        return DuplicateIds()
    rows = [i for i, k in enumerate(keys) if k in repeated]
    return DuplicateIds(
        ids=len(repeated),
        rows=sum(repeated.values()),
        sample=_first_distinct(ids.take(pa.array(rows, pa.int64())), sample),
    )


def _first_distinct(rows: pa.ChunkedArray, limit: int) -> list[JsonScalar]:
    seen: set[Any] = set()
    keep: list[int] = []
    for i, key in enumerate(id_keys(rows)):
        if key is not None and key not in seen:
            seen.add(key)
            keep.append(i)
            if len(keep) == limit:
                break
    return ids_to_json(rows.take(pa.array(keep, pa.int64())))


def _slice_ids(piece: RowSlice, input_spec: InputSpec) -> pa.ChunkedArray:
    column = input_spec.id_column
    if column in piece.partition:  # an id that is a partition folder
        return pa.chunked_array([pa.array([piece.partition[column]] * piece.length, pa.string())])

    def read() -> pa.ChunkedArray:
        fs, inner = input_file_fs(input_spec, piece.path)
        with open_input(fs, inner) as f:
            return pq.ParquetFile(f).read_row_group(piece.row_group, columns=[column]).column(0)

    ids = with_retries(f"read ids of {piece.path}", read)
    return ids.slice(piece.offset, piece.length)
