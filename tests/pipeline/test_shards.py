from __future__ import annotations

import logging
import pickle

import pyarrow as pa
import pytest

from batchmt.pipeline.inputs.corpus import CorpusError, open_dataset
from batchmt.pipeline.inputs.reader import read_shard
from batchmt.pipeline.inputs.shards import Plan, RowSlice, plan_shards
from batchmt.pipeline.spec import InputSpec, ShardingSpec
from tests.conftest import StorageRoot


def rows(start: int, n: int) -> pa.Table:
    return pa.table(
        {"id": list(range(start, start + n)), "text": [f"s{i}" for i in range(start, start + n)]}
    )


def docs(sizes: list[int], start: int = 0, names: list[str] | None = None) -> pa.Table:
    """Rows grouped into contiguous documents of the given sizes."""
    doc_ids, seg = [], []
    for d, size in enumerate(sizes):
        doc_ids += [names[d] if names else f"d{d}"] * size
        seg += list(range(size))
    n = len(doc_ids)
    return pa.table(
        {
            "id": list(range(start, start + n)),
            "text": [f"s{i}" for i in range(n)],
            "doc_id": doc_ids,
            "seg_idx": seg,
        }
    )


def plan_for(root: StorageRoot, path: str, rows_per_shard: int) -> tuple[Plan, InputSpec]:
    input_spec = InputSpec(path=root.url_of(path), storage_options=root.storage_options)
    plan = plan_shards(
        open_dataset(input_spec), input_spec, ShardingSpec(rows_per_shard=rows_per_shard)
    )
    return plan, input_spec


def test_row_groups_are_cut_to_shard_size_and_read_back_exactly(storage_root: StorageRoot):
    storage_root.write_parquet("in/a.parquet", rows(0, 25), row_group_size=10)  # 10, 10, 5
    storage_root.write_parquet("in/b.parquet", rows(25, 7))
    plan, input_spec = plan_for(storage_root, "in", rows_per_shard=4)
    assert [s.shard_id for s in plan.shards][:3] == ["00000", "00001", "00002"]
    assert [s.num_rows for s in plan.shards] == [4] * 8
    assert plan.num_rows == 32
    # shard 2 straddles the first row-group boundary: rows 8-9 of rg 0, rows 0-1 of rg 1
    assert [(s.row_group, s.offset, s.length) for s in plan.shards[2].slices] == [
        (0, 8, 2),
        (1, 0, 2),
    ]
    seen = []
    for shard in plan.shards:
        table = read_shard(pickle.loads(pickle.dumps(shard)), input_spec)  # as an actor gets it
        assert table.num_rows == shard.num_rows
        seen += table.column("id").to_pylist()
    assert seen == list(range(32))


def test_plan_is_deterministic_and_roundtrips(storage_root: StorageRoot):
    storage_root.write_parquet("in/a.parquet", rows(0, 30), row_group_size=7)
    first, _ = plan_for(storage_root, "in", 8)
    second, _ = plan_for(storage_root, "in", 8)
    assert first.to_json() == second.to_json()
    assert Plan.from_json(first.to_json()) == first
    assert '"shard_id":"00000"' in first.to_json()
    other, _ = plan_for(storage_root, "in", 9)
    assert other.fingerprint != first.fingerprint


def test_documents_are_never_split(storage_root: StorageRoot):
    # docs of 3, 4, 2, 5 rows; row groups of 4 cut through documents
    storage_root.write_parquet("in/a.parquet", docs([3, 4, 2, 5]), row_group_size=4)
    plan, input_spec = plan_for(storage_root, "in", rows_per_shard=6)
    shard_docs = [read_shard(s, input_spec).column("doc_id").to_pylist() for s in plan.shards]
    assert shard_docs == [["d0"] * 3, ["d1"] * 4 + ["d2"] * 2, ["d3"] * 5]
    for i, a in enumerate(shard_docs):
        for b in shard_docs[i + 1 :]:
            assert not set(a) & set(b)
    assert plan.noncontiguous_documents == 0


def test_document_spanning_files_stays_together(storage_root: StorageRoot):
    storage_root.write_parquet("in/a.parquet", docs([2, 3], names=["x", "y"]))
    storage_root.write_parquet("in/b.parquet", docs([2, 1], start=5, names=["y", "z"]))
    plan, input_spec = plan_for(storage_root, "in", rows_per_shard=3)
    shard_docs = [read_shard(s, input_spec).column("doc_id").to_pylist() for s in plan.shards]
    assert shard_docs == [["x", "x"], ["y"] * 5, ["z"]]


def test_oversized_document_gets_its_own_shard(storage_root: StorageRoot):
    storage_root.write_parquet("in/a.parquet", docs([1, 9, 1]), row_group_size=4)
    plan, _ = plan_for(storage_root, "in", rows_per_shard=3)
    assert [s.num_rows for s in plan.shards] == [1, 9, 1]


def test_noncontiguous_documents_are_counted_and_logged(storage_root: StorageRoot, caplog):
    storage_root.write_parquet("in/a.parquet", docs([2, 2, 2], names=["a", "b", "a"]))
    with caplog.at_level(logging.WARNING, logger="batchmt.pipeline.inputs.shards"):
        plan, _ = plan_for(storage_root, "in", rows_per_shard=10)
    assert plan.noncontiguous_documents == 1
    assert "1 documents" in caplog.text and "not contiguous" in caplog.text


def test_hive_partitions_are_added_back_by_read_shard(storage_root: StorageRoot):
    storage_root.write_parquet("in/dt=2026-01-01/part.parquet", rows(0, 3))
    storage_root.write_parquet("in/dt=2026-01-02/part.parquet", rows(3, 3))
    plan, input_spec = plan_for(storage_root, "in", rows_per_shard=4)
    assert plan.columns == ["id", "text", "dt"]
    second = plan.shards[0].slices[1]
    assert second == RowSlice(second.path, 0, 0, 1, {"dt": "2026-01-02"})
    tables = [read_shard(s, input_spec) for s in plan.shards]
    assert all(t.schema == tables[0].schema for t in tables)
    assert tables[0].column("dt").to_pylist() == ["2026-01-01"] * 3 + ["2026-01-02"]
    assert tables[1].column("dt").to_pylist() == ["2026-01-02"] * 2


def test_files_with_different_columns_read_back_with_one_schema(storage_root: StorageRoot):
    storage_root.write_parquet("in/a.parquet", rows(0, 2))
    storage_root.write_parquet(
        "in/b.parquet", rows(2, 2).append_column("lang", pa.array(["en", "de"]))
    )
    plan, input_spec = plan_for(storage_root, "in", rows_per_shard=2)
    first, second = (read_shard(s, input_spec) for s in plan.shards)
    assert first.schema == second.schema
    assert first.column("lang").to_pylist() == [None, None]


def test_a_file_without_the_text_column_is_named(storage_root: StorageRoot):
    storage_root.write_parquet("in/a.parquet", rows(0, 2))
    storage_root.write_parquet("in/b.parquet", pa.table({"id": [9], "body": ["x"]}))
    with pytest.raises(CorpusError, match=r"input file .*b.parquet has no column 'text'"):
        plan_for(storage_root, "in", rows_per_shard=2)
