"""The registry of earlier runs under an output (pipeline/outputs/runs.py): real manifests and
_SUCCESS files as the layouts write them (output root, and `_batchmt/<job key>/` of a table
output), with junk, half-written runs and other jobs beside them; real Delta tables and
Parquet folders behind the plans. Nothing mocked."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchmt.pipeline.inputs.plan import plan_input
from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.inputs.sources.increments import digests_of_inputs
from batchmt.pipeline.outputs.runs import RunRecord, previous_state, successful_runs
from batchmt.pipeline.spec import InputSpec, ShardingSpec
from batchmt.pipeline.storage.fs import open_fs

deltalake = pytest.importorskip("deltalake")

SHARDING = ShardingSpec(rows_per_shard=4)


def rows(n: int, start: int = 0) -> pa.Table:
    ids = [f"r{i:03d}" for i in range(start, start + n)]
    return pa.table({"id": ids, "text": [f"text {i}" for i in ids]})


def put(folder: Path, name: str, obj: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = obj if isinstance(obj, str) else json.dumps(obj)
    (folder / name).write_text(text, encoding="utf-8")


def leave_run(
    folder: Path,
    planned: Plan,
    *,
    finished_at: str | None,
    run_id: str = "",
    job_name: str = "nightly",
    runs: list[str] | None = None,
) -> None:
    """A run's bookkeeping: the manifest first; `_SUCCESS` last, only when it finished."""
    manifest: dict[str, Any] = {"version": 1, "spec_fingerprint": "f" * 16}
    manifest["plan"] = planned.to_dict()
    if runs is not None:
        manifest.update(runs=runs, carried={})
    put(folder, "_manifest.json", manifest)
    if finished_at is not None:
        success = {"job_name": job_name, "rows_in": planned.num_rows, "finished_at": finished_at}
        if run_id:
            success["run_id"] = run_id
        put(folder, "_SUCCESS", success)


def runs_of(output: Path, job_name: str = "nightly") -> list[RunRecord]:
    fs, root = open_fs(str(output))
    return successful_runs(fs, root, job_name)


def test_table_output_runs_in_finish_order_junk_and_half_runs_skipped(tmp_path: Path) -> None:
    table = str(tmp_path / "t")
    deltalake.write_deltalake(table, rows(4))  # v0
    spec = InputSpec(path=table)
    v0 = plan_input(spec, SHARDING)
    deltalake.write_deltalake(table, rows(2, 10), mode="append")  # v1
    v1 = plan_input(spec, SHARDING)
    deltalake.write_deltalake(table, rows(2, 20), mode="append")  # v2
    v2 = plan_input(spec, SHARDING)

    out = tmp_path / "out"
    jobs = out / "_batchmt"
    # Finished second, though its folder sorts first: order is by finish time.
    leave_run(
        jobs / "nightly-aaaa000000000001", v1, finished_at="2026-11-26T09:00:00Z", run_id="r2"
    )
    leave_run(
        jobs / "nightly-bbbb000000000002", v0, finished_at="2026-11-25T09:00:00Z", run_id="r1"
    )
    # Half-written: a manifest, no _SUCCESS (killed or still running).
    leave_run(jobs / "nightly-cccc000000000003", v2, finished_at=None)
    # A later run took over a finished folder and has not finished: its manifest is not
    # what the _SUCCESS beside it describes.
    leave_run(
        jobs / "nightly-dddd000000000004",
        v2,
        finished_at="2026-11-27T09:00:00Z",
        run_id="r3",
        runs=["r3", "r4"],
    )
    put(jobs / "nightly-eeee000000000005", "_SUCCESS", "{not json")  # damaged
    put(jobs / "nightly-ffff000000000006", "_SUCCESS", json.dumps({"finished_at": "x"}))
    put(jobs / "nightly-9999000000000009", "_SUCCESS", json.dumps([1, 2]))
    (jobs / "nightly-empty").mkdir()
    put(jobs / "junk", "notes.txt", "hello")
    leave_run(
        jobs / "other-aaaa000000000001", v2, finished_at="2026-11-28T09:00:00Z", job_name="other"
    )
    (out / "_delta_log").mkdir(parents=True)  # the table's own files beside them

    found = runs_of(out)
    assert [(r.job_key, r.run_id, r.version) for r in found] == [
        ("nightly-bbbb000000000002", "r1", 0),
        ("nightly-aaaa000000000001", "r2", 1),
    ]
    assert found[0].finished_at == datetime.datetime(2026, 11, 25, 9, tzinfo=datetime.UTC)
    assert found[1].rows == 6 and found[1].input_path == table
    assert found[1].source["format"] == "delta" and found[1].seen == frozenset()
    assert found[1].folder.endswith("_batchmt/nightly-aaaa000000000001")

    # since: last continues from the last one that finished.
    state = previous_state(found, InputSpec(path=table, since="last"))
    assert state is not None and state.version == 1
    assert state.summary["run_id"] == "r2" and state.summary["job_key"].startswith("nightly-a")
    assert runs_of(out, "other")[0].version == 2  # another job's runs are its own
    assert runs_of(out, "weekly") == []


def test_previous_state_counts_only_runs_of_the_same_input(tmp_path: Path) -> None:
    table = str(tmp_path / "t")
    deltalake.write_deltalake(table, rows(4))
    deltalake.write_deltalake(table, rows(2, 10), mode="append")
    out = tmp_path / "out"
    jobs = out / "_batchmt"
    v1 = plan_input(InputSpec(path=table), SHARDING)
    leave_run(jobs / "nightly-1", v1, finished_at="2026-11-25T09:00:00Z")
    other_path = str(tmp_path / "u")
    deltalake.write_deltalake(other_path, rows(1))
    leave_run(
        jobs / "nightly-2",
        plan_input(InputSpec(path=other_path), SHARDING),
        finished_at="2026-11-26T09:00:00Z",
    )
    pq.write_table(rows(1), tmp_path / "f.parquet")
    leave_run(
        jobs / "nightly-3",
        plan_input(InputSpec(path=str(tmp_path / "f.parquet")), SHARDING),
        finished_at="2026-11-27T09:00:00Z",
    )

    found = runs_of(out)
    assert len(found) == 3
    state = previous_state(found, InputSpec(path=table, since="last"))
    assert state is not None and state.version == 1  # the other table and folder: not counted
    assert previous_state(found, InputSpec(path=table + "/", since="last")) == state
    assert previous_state(found, InputSpec(path=table, since="last", filter="x = '1'")) is None
    assert previous_state([], InputSpec(path=table, since="last")) is None  # first run


def test_parquet_output_root_run_and_its_seen_files(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(rows(2), folder / "a.parquet")
    pq.write_table(rows(2, 10), folder / "b.parquet")
    full = plan_input(InputSpec(path=str(folder)), SHARDING)  # a run without input.since
    out = tmp_path / "out"
    leave_run(out, full, finished_at="2026-11-25T09:00:00Z")  # a plain output: at its root

    found = runs_of(out)
    assert [(r.job_key, r.run_id, r.rows) for r in found] == [("", "", 4)]
    assert found[0].seen == digests_of_inputs(full.inputs) and len(found[0].seen) == 2
    state = previous_state(found, InputSpec(path=str(folder), since="last"))
    assert state is not None and state.seen == found[0].seen
    assert state.summary["files_seen"] == 2

    # An incremental run records every live file it saw; the next one starts from those.
    pq.write_table(rows(1, 20), folder / "c.parquet")
    spec = InputSpec(path=str(folder), since="last")
    grown = plan_input(spec, SHARDING, previous=state)
    assert grown.num_rows == 1
    leave_run(out, grown, finished_at="2026-11-26T09:00:00Z")
    again = runs_of(out)
    assert len(again) == 1 and len(again[0].seen) == 3  # the root holds the latest run
    assert plan_input(spec, SHARDING, previous=previous_state(again, spec)).shards == []

    # A root manifest without _SUCCESS (the run was killed) is no run at all.
    (out / "_SUCCESS").unlink()
    assert runs_of(out) == []
    # Nor is a manifest whose seen-set is damaged.
    leave_run(out, grown, finished_at="2026-11-26T09:00:00Z")
    manifest = json.loads((out / "_manifest.json").read_text())
    manifest["plan"]["source"]["since"]["seen"]["data"] = "@@@"
    put(out, "_manifest.json", manifest)
    assert runs_of(out) == []
