"""Reading a shard: a bad value becomes a per-row error, never a failed shard (issue #15.3)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from batchmt.pipeline.ids import ids_to_json
from batchmt.pipeline.inputs.corpus import open_dataset
from batchmt.pipeline.inputs.reader import read_shard_data
from batchmt.pipeline.inputs.shards import plan_shards
from batchmt.pipeline.spec import InputSpec, ShardingSpec


def bytes_as_text(values: list[bytes | None]) -> pa.Array:
    return pa.array(values, pa.binary()).view(pa.string())


def test_invalid_utf8_anywhere_is_a_row_error_and_ids_come_back_exactly(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": bytes_as_text([b"a", b"b\xff", b"c", b"d"]),
            "text": bytes_as_text([b"ok", b"ok", b"bad \xc3", b"ok"]),
            "context": pa.array([None, None, None, [b"x\xfe"]], pa.list_(pa.binary()))
            .cast(pa.list_(pa.binary()))
            .view(pa.list_(pa.string())),
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    spec = InputSpec(path=str(tmp_path / "in.parquet"))
    plan = plan_shards(open_dataset(spec), spec, ShardingSpec())
    data = read_shard_data(plan.shards[0], spec)

    assert data.row_errors[0] is None
    assert "'id'" in (data.row_errors[1] or "") and "written as it came" in (
        data.row_errors[1] or ""
    )
    assert "'text'" in (data.row_errors[2] or "") and "U+FFFD" in (data.row_errors[2] or "")
    assert "'context'" in (data.row_errors[3] or "")
    # The id keeps its bytes (output rows must match input rows); the text is readable.
    ids = data.table.column("id").cast(pa.binary()).to_pylist()
    assert ids == [b"a", b"b\xff", b"c", b"d"]
    assert data.table.column("text").to_pylist() == ["ok", "ok", "bad \ufffd", "ok"]
    assert data.table.column("context").to_pylist()[3] is None
    assert ids_to_json(data.table.column("id")) == ["a", "b\\xff", "c", "d"]


def test_files_with_and_without_dictionary_encoding_plan_and_read_as_one(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    plain = pa.table({"id": ["a", "b"], "text": ["x", "y"]})
    encoded = pa.table(
        {"id": pa.array(["c"]).dictionary_encode(), "text": pa.array(["z"]).dictionary_encode()}
    )
    pq.write_table(plain, tmp_path / "in" / "1.parquet")
    pq.write_table(encoded, tmp_path / "in" / "2.parquet")
    spec = InputSpec(path=str(tmp_path / "in"))
    plan = plan_shards(open_dataset(spec), spec, ShardingSpec(rows_per_shard=2))
    tables = [read_shard_data(shard, spec).table for shard in plan.shards]
    assert [t.schema.field("text").type for t in tables] == [pa.string(), pa.string()]
    assert [v for t in tables for v in t.column("id").to_pylist()] == ["a", "b", "c"]
