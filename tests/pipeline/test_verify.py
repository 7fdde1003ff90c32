"""Streaming verify (issue #15, finding 6): shard by shard, with retries, ids of any type."""

from __future__ import annotations

import errno
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from batchmt.pipeline import status
from batchmt.pipeline.inputs.corpus import open_dataset
from batchmt.pipeline.inputs.reader import read_shard
from batchmt.pipeline.inputs.shards import Plan, plan_shards
from batchmt.pipeline.outputs import verify
from batchmt.pipeline.outputs.commit import mark_complete, prepare_output, write_shard_data
from batchmt.pipeline.outputs.layout import OutputLayout
from batchmt.pipeline.outputs.verify import verify_output
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.spec import InputSpec, OutputSpec, ShardingSpec
from tests.conftest import StorageRoot


def setup_job(
    root: StorageRoot, n: int = 10, rows_per_shard: int = 4
) -> tuple[OutputLayout, Plan, InputSpec]:
    table = pa.table({"id": list(range(n)), "text": [f"s{i}" for i in range(n)]})
    root.write_parquet("in/a.parquet", table)
    input_spec = InputSpec(path=root.url_of("in"), storage_options=root.storage_options)
    sharding = ShardingSpec(rows_per_shard=rows_per_shard)
    plan = plan_shards(open_dataset(input_spec), input_spec, sharding)
    layout = OutputLayout.open(
        OutputSpec(path=root.url_of("out"), storage_options=root.storage_options)
    )
    prepare_output(layout, plan, "spec")
    return layout, plan, input_spec


def publish(layout: OutputLayout, shard_id: str, table: pa.Table) -> None:
    """What a worker and the driver do for a shard: data, then the completion marker."""
    n = table.num_rows
    out = (
        table.append_column("translation", table.column("text"))
        .append_column("status", pa.array([status.OK] * n))
        .append_column("error", pa.nulls(n, pa.string()))
    )
    write_shard_data(layout, shard_id, out)
    mark_complete(layout, ShardResult(shard_id=shard_id, num_rows=n, status_counts={"ok": n}))


def run_all(layout: OutputLayout, plan: Plan, input_spec: InputSpec) -> None:
    for shard in plan.shards:
        publish(layout, shard.shard_id, read_shard(shard, input_spec))


def test_verify_holds_one_shard_of_ids_at_a_time(
    storage_root: StorageRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout, plan, input_spec = setup_job(storage_root, n=10, rows_per_shard=4)
    run_all(layout, plan, input_spec)
    sizes: list[int] = []
    keys = verify.id_keys

    def counting(values: Any) -> list[Any]:
        sizes.append(len(values))
        return keys(values)

    monkeypatch.setattr(verify, "id_keys", counting)
    report = verify_output(layout, input_spec)
    assert report.ok, report
    assert (report.input_rows, report.output_rows, report.shards_checked) == (10, 10, 3)
    # Input and output ids are keyed per shard: never more than a shard's rows at once.
    assert sizes and max(sizes) <= 4


def test_verify_finds_missing_duplicate_and_unexpected_ids(storage_root: StorageRoot) -> None:
    layout, plan, input_spec = setup_job(storage_root, n=10, rows_per_shard=4)
    run_all(layout, plan, input_spec)
    shard1 = pq.read_table(layout.fs.open(layout.data("00001"), "rb")).select(["id", "text"])
    damaged = pa.concat_tables(
        [
            shard1.filter(pc.not_equal(shard1.column("id"), 5)),
            pa.table({"id": [6, 77], "text": ["again", "unknown"]}),
        ]
    )
    publish(layout, "00001", damaged)
    report = verify_output(layout, input_spec)
    assert not report.ok
    assert (report.missing_count, report.missing_ids) == (1, [5])
    assert (report.duplicated_count, report.duplicated_ids) == (1, [6])
    assert (report.unexpected_count, report.unexpected_ids) == (1, [77])


def test_verify_retries_a_transient_storage_error(
    storage_root: StorageRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout, plan, input_spec = setup_job(storage_root, n=6, rows_per_shard=3)
    run_all(layout, plan, input_spec)
    opened = verify.open_input
    failures: list[str] = []

    def flaky(fs: Any, path: str) -> Any:
        if path.endswith(".parquet") and path not in failures:
            failures.append(path)  # every file fails once, as a dropped connection would
            raise OSError(errno.ECONNRESET, "connection reset by peer")
        return opened(fs, path)

    monkeypatch.setattr(verify, "open_input", flaky)
    report = verify_output(layout, input_spec)
    assert failures and report.ok, report


def test_rows_without_a_reason_and_unmarked_data_are_problems(storage_root: StorageRoot) -> None:
    layout, plan, input_spec = setup_job(storage_root, n=3, rows_per_shard=10)
    out = read_shard(plan.shards[0], input_spec)
    n = out.num_rows
    out = (
        out.append_column("translation", pa.nulls(n, pa.string()))
        .append_column("status", pa.array([status.FAILED] * n))
        .append_column("error", pa.nulls(n, pa.string()))
    )
    write_shard_data(layout, "00000", out)  # no completion marker
    report = verify_output(layout, input_spec)
    assert report.unexplained_rows == 3
    assert report.unmarked_shards == ["00000"] and not report.ok
