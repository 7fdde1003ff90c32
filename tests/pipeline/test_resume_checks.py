"""A resume trusts `_manifest.json` only after checking it: pinned inputs unchanged, shard ids
that stay under the output, slices inside `input.path` that cover each row once. And which
completion markers count once a newer run took the output over."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from batchmt.pipeline.inputs.corpus import open_dataset
from batchmt.pipeline.inputs.shards import Plan, plan_shards
from batchmt.pipeline.outputs.commit import mark_complete, prepare_output
from batchmt.pipeline.outputs.layout import OutputConflictError, OutputLayout
from batchmt.pipeline.outputs.lease import acquire, release
from batchmt.pipeline.outputs.records.markers import completed_shards
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.spec import InputSpec, OutputSpec, ShardingSpec
from batchmt.pipeline.storage.fs import read_json, write_json
from tests.conftest import StorageRoot


def _table(n: int, start: int = 0) -> pa.Table:
    return pa.table({"id": list(range(start, start + n)), "text": [f"s{i}" for i in range(n)]})


def _job(root: StorageRoot) -> tuple[OutputLayout, InputSpec]:
    root.write_parquet("in/a.parquet", _table(10), row_group_size=5)
    root.write_parquet("in/b.parquet", _table(6, 100))
    root.write_parquet("elsewhere/secret.parquet", _table(10, 900))
    input_spec = InputSpec(path=root.url_of("in"), storage_options=root.storage_options)
    layout = OutputLayout.open(
        OutputSpec(path=root.url_of("out"), storage_options=root.storage_options)
    )
    return layout, input_spec


def _plan(input_spec: InputSpec) -> Plan:
    return plan_shards(open_dataset(input_spec), input_spec, ShardingSpec(rows_per_shard=4))


def _tamper(layout: OutputLayout, change: Any) -> None:
    data = read_json(layout.fs, layout.manifest)
    change(data["plan"])
    write_json(layout.fs, layout.manifest, data)


def test_rewritten_input_file_refuses_the_resume_naming_it(storage_root: StorageRoot) -> None:
    layout, input_spec = _job(storage_root)
    prepare_output(layout, _plan(input_spec), "spec")
    # Same name, same row count, other rows: the plan's slices would read different data.
    storage_root.write_parquet("in/b.parquet", _table(6, 500))
    with pytest.raises(OutputConflictError, match=r"b\.parquet changed since .*overwrite=true"):
        prepare_output(layout, _plan(input_spec), "spec")


def test_removed_input_file_refuses_the_resume(storage_root: StorageRoot) -> None:
    layout, input_spec = _job(storage_root)
    prepare_output(layout, _plan(input_spec), "spec")
    fs, path = layout.fs, layout.root.rsplit("/", 1)[0] + "/in/a.parquet"
    fs.rm(path)
    with pytest.raises(OutputConflictError, match=r"a\.parquet .* gone"):
        prepare_output(layout, _plan(input_spec), "spec")


def test_unchanged_input_resumes_and_a_new_file_is_not_picked_up(
    storage_root: StorageRoot,
) -> None:
    layout, input_spec = _job(storage_root)
    plan = _plan(input_spec)
    prepare_output(layout, plan, "spec")
    storage_root.write_parquet("in/c.parquet", _table(3, 300))
    assert prepare_output(layout, _plan(input_spec), "spec") == ("resume", plan)


def _rename_first_shard(plan: dict[str, Any]) -> None:
    plan["shards"][0]["shard_id"] = "../../escaped"


def _read_outside(plan: dict[str, Any]) -> None:
    plan["shards"][0]["slices"][0]["path"] = plan["shards"][0]["slices"][0]["path"].replace(
        "in/a.parquet", "elsewhere/secret.parquet"
    )


def _read_twice(plan: dict[str, Any]) -> None:
    plan["shards"][1]["slices"] = plan["shards"][0]["slices"]


def _miscount(plan: dict[str, Any]) -> None:
    plan["shards"][0]["num_rows"] += 1


def _past_the_end(plan: dict[str, Any]) -> None:
    last = plan["shards"][-1]["slices"][-1]
    last["offset"] += 100


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (_rename_first_shard, "not plain digits"),
        (_read_outside, "does not list"),
        (_read_twice, "read twice"),
        (_miscount, "do not add up"),
        (_past_the_end, "gap"),
    ],
)
def test_tampered_manifest_is_refused(storage_root: StorageRoot, tamper: Any, why: str) -> None:
    layout, input_spec = _job(storage_root)
    prepare_output(layout, _plan(input_spec), "spec")
    _tamper(layout, tamper)
    with pytest.raises(OutputConflictError, match=why):
        prepare_output(layout, _plan(input_spec), "spec")


def test_marker_of_a_fenced_out_run_never_counts(storage_root: StorageRoot) -> None:
    layout, input_spec = _job(storage_root)
    plan = _plan(input_spec)
    first = acquire(layout.fs, layout.root, ttl_s=600)
    prepare_output(layout, plan, "spec", lease=first)
    a, b, c = (s.shard_id for s in plan.shards[:3])
    mark_complete(layout, ShardResult(a, 4, {"ok": 4}), first)
    # The first driver dies; a second one takes the output over and resumes.
    release(layout.fs, layout.root, first)
    second = acquire(layout.fs, layout.root, ttl_s=600)
    assert prepare_output(layout, _plan(input_spec), "spec", lease=second).mode == "resume"
    # The first driver was not dead after all: its late marker must not count, while the
    # shard it finished before the takeover (a crash's valid work) still does.
    mark_complete(layout, ShardResult(b, 4, {"ok": 4}), first)
    mark_complete(layout, ShardResult(c, 4, {"ok": 4}), second)
    assert set(completed_shards(layout)) == {a, c}
    manifest = json.loads(layout.fs.cat_file(layout.manifest))
    assert manifest["runs"] == [first.run_id, second.run_id]


def test_markers_of_another_spec_never_count_after_overwrite(storage_root: StorageRoot) -> None:
    layout, input_spec = _job(storage_root)
    plan = _plan(input_spec)
    first = acquire(layout.fs, layout.root, ttl_s=600)
    prepare_output(layout, plan, "spec-a", lease=first)
    release(layout.fs, layout.root, first)
    second = acquire(layout.fs, layout.root, ttl_s=600)
    prepare_output(layout, plan, "spec-b", overwrite=True, lease=second)
    mark_complete(layout, ShardResult(plan.shards[0].shard_id, 4, {"ok": 4}), first)
    assert completed_shards(layout) == {}


def test_a_stray_marker_name_is_no_shard(storage_root: StorageRoot) -> None:
    layout, input_spec = _job(storage_root)
    prepare_output(layout, _plan(input_spec), "spec")
    storage_root.write_bytes("out/_completions/..evil", b"{}")
    storage_root.write_bytes("out/_completions/99999", b"{}")
    assert completed_shards(layout) == {}
    with pytest.raises(ValueError, match="digits only"):
        layout.data("../../x")
