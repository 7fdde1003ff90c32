from __future__ import annotations

import pyarrow as pa
import pytest

from batchmt.pipeline import status
from batchmt.pipeline.inputs.corpus import open_dataset
from batchmt.pipeline.inputs.reader import read_shard
from batchmt.pipeline.inputs.shards import Plan, plan_shards
from batchmt.pipeline.outputs.commit import (
    mark_complete,
    prepare_output,
    write_quality,
    write_shard_data,
    write_success,
)
from batchmt.pipeline.outputs.layout import OutputConflictError, OutputLayout, read_manifest
from batchmt.pipeline.outputs.records.markers import completed_shard_ids, completed_shards
from batchmt.pipeline.outputs.records.status import job_status, read_success
from batchmt.pipeline.quality.samples import QualitySettings, ShardRows, shard_quality
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.spec import InputSpec, OutputSpec, ShardingSpec
from tests.conftest import StorageRoot


def setup_job(
    root: StorageRoot, n: int = 10, rows_per_shard: int = 4
) -> tuple[OutputLayout, Plan, InputSpec]:
    table = pa.table({"id": list(range(n)), "text": [f"s{i}" for i in range(n)]})
    root.write_parquet("in/a.parquet", table)
    input_spec = InputSpec(path=root.url_of("in"), storage_options=root.storage_options)
    plan = plan_shards(
        open_dataset(input_spec), input_spec, ShardingSpec(rows_per_shard=rows_per_shard)
    )
    layout = OutputLayout.open(
        OutputSpec(path=root.url_of("out"), storage_options=root.storage_options)
    )
    return layout, plan, input_spec


def translate(table: pa.Table, failed_ids: frozenset[int] = frozenset()) -> pa.Table:
    """Stand-in for the worker: uppercases text, marks some rows failed with an error."""
    ids = table.column("id").to_pylist()
    texts = table.column("text").to_pylist()
    failed = [i in failed_ids for i in ids]
    return (
        table.append_column(
            "translation",
            pa.array([None if f else t.upper() for t, f in zip(texts, failed)], pa.string()),
        )
        .append_column("status", pa.array([status.FAILED if f else status.OK for f in failed]))
        .append_column(
            "error", pa.array(["model error" if f else None for f in failed], pa.string())
        )
    )


def run_shard(
    layout: OutputLayout,
    plan: Plan,
    input_spec: InputSpec,
    index: int,
    failed: frozenset[int] = frozenset(),
) -> None:
    shard = plan.shards[index]
    out = translate(read_shard(shard, input_spec), failed)
    write_shard_data(layout, shard.shard_id, out)
    statuses = out.column("status").to_pylist()
    write_quality(
        layout,
        shard.shard_id,
        shard_quality(
            ShardRows(
                shard.shard_id,
                out.column("text").to_pylist(),
                out.column("translation").to_pylist(),
                statuses,
            ),
            QualitySettings(sample_size=2, signature={"model": "test"}),
        ),
    )
    counts = {s: statuses.count(s) for s in set(statuses)}
    mark_complete(layout, ShardResult(shard.shard_id, out.num_rows, counts))


def test_prepare_new_resume_conflict_overwrite(storage_root: StorageRoot):
    layout, plan, input_spec = setup_job(storage_root)
    assert prepare_output(layout, plan, "spec-a") == ("new", plan)
    assert read_manifest(layout) == ("spec-a", plan)
    run_shard(layout, plan, input_spec, 0)

    mode, frozen = prepare_output(layout, plan, "spec-a")
    assert (mode, frozen) == ("resume", plan)
    assert completed_shard_ids(layout) == {"00000"}

    with pytest.raises(
        OutputConflictError,
        match=r"fingerprint spec-a, this spec spec-b\); use --set output.overwrite=true to "
        r"start over, or choose another output.path",
    ):
        prepare_output(layout, plan, "spec-b")

    assert prepare_output(layout, plan, "spec-b", overwrite=True).mode == "new"
    assert completed_shards(layout) == {}
    assert not layout.fs.exists(layout.data("00000"))
    assert read_manifest(layout) == ("spec-b", plan)


def test_resume_keeps_the_frozen_plan_when_input_changed(storage_root: StorageRoot):
    layout, plan, input_spec = setup_job(storage_root)
    prepare_output(layout, plan, "spec-a")
    storage_root.write_parquet("in/b.parquet", pa.table({"id": [100], "text": ["new"]}))
    replanned = plan_shards(open_dataset(input_spec), input_spec, ShardingSpec(rows_per_shard=4))
    assert replanned.fingerprint != plan.fingerprint
    assert prepare_output(layout, replanned, "spec-a") == ("resume", plan)


def test_completed_shards_tolerates_missing_folder_and_reads_bodies(storage_root: StorageRoot):
    layout, plan, input_spec = setup_job(storage_root)
    assert completed_shards(layout) == {}
    prepare_output(layout, plan, "s")
    run_shard(layout, plan, input_spec, 1)
    run_shard(layout, plan, input_spec, 1)  # a duplicated attempt overwrites
    assert completed_shards(layout) == {"00001": ShardResult("00001", 4, {"ok": 4})}
    assert layout.fs.ls(layout.data_dir, detail=False) == [layout.data("00001")]


def test_a_late_marker_of_a_lost_lease_never_replaces_the_new_holders(
    storage_root: StorageRoot,
) -> None:
    """A driver paused between its lease check and its marker write (the fault suite's
    SIGSTOP hit this window in CI) must not overwrite the marker the new holder wrote for
    the same shard: its own would not count, and the shard would read as not done."""
    from batchmt.pipeline.outputs.lease import LeaseLostError
    from batchmt.pipeline.outputs.records.markers import (
        CompletionMarker,
        read_many,
        write_marker,
    )

    layout, _plan, _input = setup_job(storage_root)
    result = ShardResult("00004", 4, {"ok": 4})

    def generation() -> tuple[str, int | None]:
        body = read_many(layout, {"m": layout.completion("00004")})["m"]
        marker = CompletionMarker.from_dict(body, "00004")
        return (marker.run_id, marker.lease_generation)

    write_marker(layout, CompletionMarker(result, "old", 1))  # created
    write_marker(layout, CompletionMarker(result, "old", 1))  # its own: replaced
    write_marker(layout, CompletionMarker(result, "new", 2))  # an older one: replaced
    assert generation() == ("new", 2)
    with pytest.raises(LeaseLostError, match="run new of generation 2"):
        write_marker(layout, CompletionMarker(result, "old", 1))
    assert generation() == ("new", 2)
    write_marker(layout, CompletionMarker(result))  # no lease (bare API): plain publish
    assert generation() == ("legacy", None)


def test_job_status_and_success(storage_root: StorageRoot):
    layout, plan, input_spec = setup_job(storage_root, n=10, rows_per_shard=4)
    prepare_output(layout, plan, "s")
    run_shard(layout, plan, input_spec, 0, failed=frozenset({1}))
    report = job_status(layout).to_dict()
    assert report["shards"] == {"total": 3, "done": 1, "pending": 2}
    assert report["pending_shards"] == ["00001", "00002"]
    assert report["rows"] == {
        "input": 10,
        "done": 4,
        "ok": 3,
        "failed": 1,
        "by_status": {"failed": 1, "ok": 3},
    }
    assert report["success"] is False
    assert report["quality"]["shards"] == 1 and report["quality"]["sampled_rows"] == 2

    for i in (1, 2):
        run_shard(layout, plan, input_spec, i)
    write_success(layout, {"rows": 10})
    success = read_success(layout)
    assert success is not None and success.body == {"rows": 10, "version": 1}
    report = job_status(layout).to_dict()
    assert report["shards"]["pending"] == 0 and report["success"] is True
