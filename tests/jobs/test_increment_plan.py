"""input.since through the driver side: make_plan against the runs an output holds, the
`increment_planned` log and `batchmt plan`'s line, and a job whose increment is empty.
Real deltalake and Parquet folders, the real commit layout; no Ray needed (nothing to run)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import structlog

from batchmt.jobs.commands import plan_summary
from batchmt.jobs.driver import run_job
from batchmt.jobs.prepare import make_plan
from batchmt.pipeline.inputs.reader import read_shard
from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.inputs.sources.increments import increment_key
from batchmt.pipeline.outputs.commit import prepare_output, write_success
from batchmt.pipeline.outputs.layout import OutputLayout
from batchmt.pipeline.outputs.records.status import read_success
from batchmt.pipeline.spec import InputSpec, JobSpec, ModelSpec, OutputSpec, ShardingSpec

deltalake = pytest.importorskip("deltalake")

SHARDING = ShardingSpec(rows_per_shard=4)


def rows(n: int, start: int = 0, lang: str | None = None) -> pa.Table:
    ids = [f"r{i:03d}" for i in range(start, start + n)]
    langs = [lang or ("de", "fr")[i % 2] for i in range(start, start + n)]
    return pa.table({"id": ids, "text": [f"text {i}" for i in ids], "lang": langs})


def ids_of(plan: Plan, spec: InputSpec) -> list[str]:
    if not plan.shards:
        return []
    table = pa.concat_tables([read_shard(shard, spec) for shard in plan.shards])
    return sorted(table.column("id").to_pylist())


def write(folder: Path, name: str, table: pa.Table) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / name)


def job(input_spec: InputSpec, output: Path, model: str = "tiny") -> JobSpec:
    return JobSpec(
        source_lang="en",
        target_lang="de",
        input=input_spec,
        output=OutputSpec(path=str(output)),
        model=ModelSpec(name_or_path=model),
        sharding=SHARDING,
    )


def finish(spec: JobSpec, planned: Plan, finished_at: str) -> None:
    """What a successful run leaves at a plain output's root: manifest, then _SUCCESS."""
    layout = OutputLayout.open(spec.output)
    prepare_output(layout, planned, spec.fingerprint(), overwrite=True)
    summary = {"job_name": spec.job_name, "rows_in": planned.num_rows, "finished_at": finished_at}
    write_success(layout, summary)


def test_make_plan_since_last_reads_the_runs_in_the_output(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(6), partition_by=["lang"])
    spec = job(InputSpec(path=path, since="last"), tmp_path / "out")

    with structlog.testing.capture_logs() as logs:
        first = make_plan(spec)
    assert first.num_rows == 6 and first.source["since"]["from"] is None
    event = next(e for e in logs if e["event"] == "increment_planned")
    assert event["files_new"] == 2 and event["rows_new"] == 6 and "seen" not in event
    assert "no earlier run: all new" in plan_summary(first)

    finish(spec, first, "2026-11-27T10:00:00Z")
    deltalake.write_deltalake(path, rows(3, 100, "it"), mode="append", partition_by=["lang"])
    with structlog.testing.capture_logs() as logs:
        second = make_plan(spec)
    assert ids_of(second, spec.input) == ["r100", "r101", "r102"]
    since = second.source["since"]
    assert since["from"]["version"] == 0 and since["from"]["finished_at"].startswith("2026-11-27")
    event = next(e for e in logs if e["event"] == "increment_planned")
    assert (event["files_new"], event["files_already_seen"], event["rows_new"]) == (1, 2, 3)
    assert (event["rows_already_seen"], event["shards"]) == (6, 1)
    assert "since run" in plan_summary(second) and "1 new file(s)" in plan_summary(second)

    # output.overwrite starts over: the earlier runs no longer count.
    fresh = OutputSpec(path=str(tmp_path / "out"), overwrite=True)
    over = spec.model_copy(update={"output": fresh})
    assert make_plan(over).num_rows == 9


def test_make_plan_since_last_on_a_parquet_folder(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write(folder, "a.parquet", rows(2))
    spec = job(InputSpec(path=str(folder), since="last"), tmp_path / "out")
    first = make_plan(spec)
    assert first.num_rows == 2
    finish(spec, first, "2026-11-27T10:00:00Z")
    assert make_plan(spec).shards == []  # nothing new since
    write(folder, "b.parquet", rows(2, 10))
    assert ids_of(make_plan(spec), spec.input) == ["r010", "r011"]


def test_a_job_with_nothing_new_succeeds_with_zero_rows(tmp_path: Path, tiny_marian: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(4), partition_by=["lang"])
    spec = job(InputSpec(path=path, since=0), tmp_path / "out", str(tiny_marian))
    empty = make_plan(spec)
    assert empty.shards == []
    assert "since version 0: 0 new file(s), 2 already translated, 4 rows" in plan_summary(empty)

    outcome = run_job(spec, show_progress=False)  # no shard to run: no actor starts
    assert (outcome.shards_total, outcome.summary["rows_in"]) == (0, 0)
    # An increment into a Parquet output has its own run folder under _batchmt/.
    run = OutputLayout.for_job(spec, increment=increment_key(empty.source))
    assert run.root.startswith(str(tmp_path / "out" / "_batchmt"))
    assert read_success(OutputLayout.open(spec.output)) is None
    record = read_success(run)
    assert record is not None and record.rows_in == 0 and record.body["shards"] == 0
    assert (record.body["rows_new"], record.body["rows_replaced"]) == (0, 0)
