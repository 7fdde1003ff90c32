"""Each id once across input.since runs (pipeline/outputs/supersede.py), without a model: a first
run over three days, then a run of another increment that translates one day again. In a
Delta / Iceberg output the older files of that day leave the table in the second run's one
commit (copies without those rows in their place); in a Parquet output they are rewritten
in place; other days' files are never read beyond their id column, nor touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from batchmt.jobs.prepare import make_plan
from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.outputs.layout import OutputLayout
from batchmt.pipeline.outputs.supersede import supersede_parquet
from batchmt.pipeline.outputs.table_commit import commit_table, recorded_properties
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.spec import JobSpec
from tests.conftest import StorageRoot
from tests.pipeline.test_table_commit import (
    DATES,
    ROWS_PER_DATE,
    only_dates,
    run_shards,
    spec_for,
    table_files,
    table_rows,
    write_input,
)

pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg")


def run_increment(
    spec: JobSpec, plan: Plan, increment: str, marker: str
) -> tuple[OutputLayout, dict[str, ShardResult]]:
    """One increment's shards written (text upper-cased as its "translation")."""
    return run_shards(spec, plan, marker, increment)


def identity(fs: Any, path: str) -> tuple[Any, ...]:
    """What tells a rewritten file from the same one (ETag on S3, mtime locally)."""
    fs.invalidate_cache(path)
    info = fs.info(path)
    return info.get("size"), info.get("ETag"), info.get("mtime")


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_a_table_run_replaces_older_rows_of_its_ids_in_its_one_commit(
    fmt: str, storage_root: StorageRoot, tmp_path: Path
) -> None:
    root = storage_root
    write_input(root)
    spec = spec_for(root, fmt, tmp_path)
    plan = make_plan(spec)
    layout, results = run_increment(spec, plan, "first", "first")
    recorded = recorded_properties("run-1", spec.fingerprint(), plan)
    first = commit_table(spec.output, layout, plan, results, recorded, "id")
    assert first.committed_now and first.rows_replaced == 0
    before = table_files(fmt, root, spec)

    day = DATES[1]
    plan2 = only_dates(plan, [day])
    layout2, results2 = run_increment(spec, plan2, "second", "second")
    recorded = recorded_properties("run-2", spec.fingerprint(), plan2)
    second = commit_table(spec.output, layout2, plan2, results2, recorded, "id")
    assert second.committed_now and second.rows_replaced == ROWS_PER_DATE

    rows = table_rows(fmt, root, spec)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(DATES) * ROWS_PER_DATE  # each id once
    assert {r["run"] for r in rows if r["date"] == day} == {"second"}
    assert {r["run"] for r in rows if r["date"] != day} == {"first"}
    after = table_files(fmt, root, spec)
    assert {f for f in before if f"date={day}" not in f} <= after  # other days untouched

    # A rerun of the second commit finds it and replaces nothing more.
    again = commit_table(spec.output, layout2, plan2, results2, recorded, "id")
    assert (again.committed_now, again.rows_replaced) == (False, 0)
    assert len(table_rows(fmt, root, spec)) == len(DATES) * ROWS_PER_DATE


def test_a_parquet_run_rewrites_older_runs_files_of_its_partitions_in_place(
    storage_root: StorageRoot, tmp_path: Path
) -> None:
    root = storage_root
    write_input(root)
    spec = spec_for(root, "parquet", tmp_path, partition_by=["date"])
    plan = make_plan(spec)
    layout, _ = run_increment(spec, plan, "first", "first")
    assert layout.runs_root and layout.root != layout.runs_root  # its own run folder
    assert supersede_parquet(layout, plan, "id") == 0
    shard = next(s for s in plan.shards if layout.partition_of(s) == {"date": DATES[0]})
    other_day = layout.data(shard.shard_id, layout.partition_of(shard))
    fs = layout.fs
    untouched = identity(fs, other_day)

    day = DATES[1]
    plan2 = only_dates(plan, [day])
    layout2, _ = run_increment(spec, plan2, "second", "second")
    assert supersede_parquet(layout2, plan2, "id") == ROWS_PER_DATE
    assert supersede_parquet(layout2, plan2, "id") == 0  # a rerun: nothing left to replace

    # Read as any Parquet reader of the folder does: every id once.
    rows = []
    for path in sorted(fs.find(layout.data_dir)):
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
        folder = path.rsplit("/", 2)[-2]
        rows += [(i, r, folder) for i, r in zip(table["id"].to_pylist(), table["run"].to_pylist())]
    ids = [i for i, _r, _p in rows]
    assert len(ids) == len(set(ids)) == len(DATES) * ROWS_PER_DATE
    assert {r for _i, r, p in rows if p == f"date={day}"} == {"second"}
    assert identity(fs, other_day) == untouched  # another partition: not rewritten
