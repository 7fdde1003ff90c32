"""One way to open an output (pipeline/outputs/runs.py): `batchmt report` and
`batchmt.read_output` on a Delta table, an Iceberg table and a Parquet output of two
`input.since` runs, each written at pipeline level (no model: the text upper-cased, as in
test_table_commit.py), then read the way a user reads them: the CLI and the Python API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import batchmt
from batchmt.jobs.cli import main
from batchmt.jobs.prepare import make_plan
from batchmt.pipeline.inputs.reader import read_shard
from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.outputs.commit import write_quality, write_success
from batchmt.pipeline.outputs.layout import OutputLayout
from batchmt.pipeline.outputs.records.markers import CompletionMarker, counted_markers
from batchmt.pipeline.outputs.records.success import Success
from batchmt.pipeline.outputs.runs import open_output
from batchmt.pipeline.outputs.supersede import supersede_parquet
from batchmt.pipeline.quality.samples import QualitySettings, ShardRows, shard_quality
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.spec import JobSpec
from batchmt.pipeline.storage.fs import write_json
from tests.conftest import StorageRoot
from tests.pipeline.test_table_commit import (
    DATES,
    ROWS_PER_DATE,
    commit,
    only_dates,
    run_shards,
    spec_for,
    write_input,
)

pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg")


def with_quality(spec: JobSpec, layout: OutputLayout, plan: Plan) -> None:
    """Each shard's quality sample, as the worker writes it."""
    settings = QualitySettings(sample_size=2, signature={"model": "upper"}, target_lang="de")
    for shard in plan.shards:
        table = read_shard(shard, spec.input)
        texts = table["text"].to_pylist()
        rows = ShardRows(shard.shard_id, texts, [t.upper() for t in texts], ["ok"] * len(texts))
        write_quality(layout, shard.shard_id, shard_quality(rows, settings))


def job(root: StorageRoot, fmt: str, tmp_path: Path) -> tuple[JobSpec, Plan]:
    """A job over the three-day hive input, partitioned by day like its input."""
    write_input(root)
    spec = spec_for(root, fmt, tmp_path, partition_by=["date"])
    return spec, make_plan(spec)


def run_with_quality(
    spec: JobSpec, plan: Plan, marker: str, increment: str = ""
) -> tuple[OutputLayout, dict[str, ShardResult]]:
    layout, results = run_shards(spec, plan, marker, increment)
    with_quality(spec, layout, plan)
    return layout, results


def finish(spec: JobSpec, layout: OutputLayout, plan: Plan, extra: dict[str, Any]) -> None:
    summary = {"job_name": spec.job_name, "model": "upper", "source_lang": "en"}
    summary.update(target_lang="de", rows_in=plan.num_rows, **extra)
    write_success(layout, {**summary, "finished_at": "2026-12-01T00:00:00Z"})


def report_of(url: str, root: StorageRoot, tmp_path: Path) -> str:
    options = [f"--storage-option={k}={v}" for k, v in root.storage_options.items()]
    target = tmp_path / "report.html"
    assert main(["report", url, "--out", str(target), *options]) == 0
    return target.read_text(encoding="utf-8")


def read(url: str, root: StorageRoot) -> list[tuple[str, str, str]]:
    table = batchmt.read_output(url, storage_options=root.storage_options)
    rows = zip(table["id"].to_pylist(), table["date"].to_pylist(), table["run"].to_pylist())
    return sorted((str(i), str(d), str(r)) for i, d, r in rows)


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_report_and_read_output_of_a_table_output(
    fmt: str, storage_root: StorageRoot, tmp_path: Path
) -> None:
    root = storage_root
    spec, plan = job(root, fmt, tmp_path)
    url = spec.output.path
    # Before any commit: a job folder with markers, and a table with no rows of ours.
    layout, results = run_with_quality(spec, plan, "first")
    assert batchmt.read_output(url, storage_options=root.storage_options).num_rows == 0
    finish(spec, layout, plan, {"table": commit(spec, layout, plan, results).to_dict()})

    view = open_output(url, root.storage_options)
    assert view.kind == fmt and [run.key for run in view.runs] == [layout.job_key]
    rows = read(url, root)
    assert len(rows) == len({i for i, _d, _r in rows}) == len(DATES) * ROWS_PER_DATE
    assert {d for _i, d, _r in rows} == set(DATES)  # Delta keeps it in the path only
    page = report_of(url, root, tmp_path)
    assert f"{len(plan.shards)} / {len(plan.shards)}" in page  # every shard, from the job folder
    assert "A DOG" in page  # sampled rows, their QE columns read from the table's files
    assert "yes (_SUCCESS written)" in page


def test_report_and_read_output_of_input_since_runs(
    storage_root: StorageRoot, tmp_path: Path
) -> None:
    root = storage_root
    spec, plan = job(root, "parquet", tmp_path)
    first, _ = run_with_quality(spec, plan, "first", "inc1")
    finish(spec, first, plan, {"rows_new": plan.num_rows, "rows_replaced": 0})
    again = only_dates(plan, [DATES[1]])
    second, _ = run_shards(spec, again, "second", "inc2")
    replaced = supersede_parquet(second, again, "id")
    finish(spec, second, again, {"rows_new": again.num_rows, "rows_replaced": replaced})
    assert replaced == ROWS_PER_DATE

    url = spec.output.path
    view = open_output(url, root.storage_options)
    assert view.kind == "runs" and [r.layout.root for r in view.runs] == [first.root, second.root]
    rows = read(url, root)
    assert len(rows) == len({i for i, _d, _r in rows}) == len(DATES) * ROWS_PER_DATE
    assert {r for _i, d, r in rows if d == DATES[1]} == {"second"}
    page = report_of(url, root, tmp_path)
    shards = len(plan.shards) + len(again.shards)
    assert f"{shards} / {shards}" in page and "runs, 2 runs" in page


def test_records_read_files_of_every_version_and_refuse_newer_ones(tmp_path: Path) -> None:
    """A marker and a _SUCCESS written before versions (no `version`, no run id) still
    read; a version newer than this batchmt's is refused by name, never guessed at."""
    layout = OutputLayout(*_local(tmp_path))
    write_json(layout.fs, layout.completion("00000"), {"num_rows": 3, "status_counts": {"ok": 3}})
    write_json(layout.fs, layout.completion("00001"), {"version": 99, "num_rows": 1})
    found = counted_markers(layout)  # no manifest: every readable marker counts
    assert list(found) == ["00000"]
    assert found["00000"] == CompletionMarker(ShardResult("00000", 3, {"ok": 3}), version=0)
    assert Success.from_dict({"rows_in": 4}).version == 0
    with pytest.raises(ValueError, match="format version 2, newer than this batchmt reads"):
        Success.from_dict({"version": 2})
    assert Success.from_dict(Success.of({"rows_in": 4}, "r1", 3).to_dict()).run_id == "r1"


def _local(tmp_path: Path) -> tuple[Any, str]:
    from batchmt.pipeline.storage.fs import open_fs

    return open_fs(str(tmp_path / "out"))
