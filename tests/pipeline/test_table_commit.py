"""Table commits of Delta and Iceberg outputs with real deltalake / pyiceberg (a SQL catalog on
SQLite), on a local folder and on S3 (moto's server): a three-partition backfill, then one
partition again with overwrite_partitions, then reruns that must add nothing.

The shards are "translated" here without a model (the text upper-cased): these tests are
about the commit; tests/jobs/test_lake_output_job.py runs the same through the driver.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from batchmt.jobs.prepare import make_plan
from batchmt.pipeline.inputs.reader import read_shard
from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.outputs.commit import mark_complete, prepare_output, write_shard_data
from batchmt.pipeline.outputs.layout import OutputLayout, data_files_found, job_key
from batchmt.pipeline.outputs.partitions import hive_path, parse_hive_path
from batchmt.pipeline.outputs.table_commit import commit_table, find_commit, recorded_properties
from batchmt.pipeline.outputs.tables.common import JOB_KEY, CommitResult, TableCommitError
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.spec import JobSpec
from batchmt.pipeline.storage.fs import open_fs
from tests.conftest import StorageRoot

deltalake = pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg")

DATES = ["2026-11-01", "2026-11-02", "2026-11-03"]
ROWS_PER_DATE = 9


def write_input(root: StorageRoot) -> None:
    """A hive-partitioned Parquet folder: date=<day>/part.parquet, ids unique per day."""
    for date in DATES:
        ids = [f"{date}-{i}" for i in range(ROWS_PER_DATE)]
        table = pa.table({"id": ids, "text": [f"a dog {i}." for i in range(ROWS_PER_DATE)]})
        root.write_parquet(f"in/date={date}/part.parquet", table)


def catalog_for(root: StorageRoot, tmp_path: Path) -> dict[str, Any]:
    properties = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db"}
    if root.kind == "s3":
        properties.update(
            {
                "warehouse": root.url_of("warehouse"),
                "s3.endpoint": root.storage_options["endpoint_url"],
                "s3.access-key-id": "testing",
                "s3.secret-access-key": "testing",
                "s3.region": "us-east-1",
            }
        )
    else:
        properties["warehouse"] = f"file://{tmp_path}/warehouse"
    return {"name": "lake", "properties": properties}


def spec_for(root: StorageRoot, fmt: str, tmp_path: Path, **output: Any) -> JobSpec:
    """A job over the hive input, writing the table at <root>/table."""
    out: dict[str, Any] = {
        "path": root.url_of("table"),
        "storage_options": root.storage_options,
        "format": fmt,
        **output,
    }
    if fmt == "iceberg":
        out.update(table="lake.translations", catalog=catalog_for(root, tmp_path))
    return JobSpec.model_validate(
        {
            "job_name": "backfill",
            "source_lang": "en",
            "target_lang": "de",
            "input": {"path": root.url_of("in"), "storage_options": root.storage_options},
            "output": out,
            "model": {"name_or_path": "unused"},
            "sharding": {"rows_per_shard": 4},
        }
    )


def only_dates(plan: Plan, dates: list[str]) -> Plan:
    """The plan restricted to some days (what input.filter gives once it exists)."""
    shards = [s for s in plan.shards if s.slices[0].partition["date"] in dates]
    return replace(plan, shards=shards, num_rows=sum(s.num_rows for s in shards))


def run_shards(
    spec: JobSpec, plan: Plan, marker: str, increment: str = ""
) -> tuple[OutputLayout, dict[str, Any]]:
    """What the workers and the driver do before the commit, without a model (`increment`:
    one input.since run's folder)."""
    layout = OutputLayout.for_job(spec, increment=increment)
    prepare_output(layout, plan, spec.fingerprint())
    layout = replace(layout, partition_by=tuple(plan.output_partitions))
    results = {}
    for shard in plan.shards:
        table = read_shard(shard, spec.input)
        out = table.append_column("translation", pc.utf8_upper(table["text"]))
        out = out.append_column("run", pa.array([marker] * out.num_rows))
        write_shard_data(layout, shard.shard_id, out, layout.partition_of(shard))
        result = ShardResult(shard.shard_id, out.num_rows, {"ok": out.num_rows})
        mark_complete(layout, result)
        results[shard.shard_id] = result
    return layout, results


def commit(spec: JobSpec, layout: OutputLayout, plan: Plan, results: dict[str, Any]) -> Any:
    recorded = recorded_properties("run-1", spec.fingerprint(), plan)
    return commit_table(spec.output, layout, plan, results, recorded)


def delta_rows(root: StorageRoot) -> list[dict[str, Any]]:
    table = deltalake.DeltaTable(root.url_of("table"), storage_options=_delta_options(root))
    return table.to_pyarrow_table().to_pylist()


def _delta_options(root: StorageRoot) -> dict[str, str]:
    from batchmt.pipeline.storage.object_store import delta_rs_options

    return delta_rs_options(root.url_of("table"), root.storage_options)


def iceberg_table(spec: JobSpec) -> Any:
    from batchmt.pipeline.outputs.tables.iceberg import load_catalog

    assert spec.output.catalog is not None and spec.output.table is not None
    catalog = load_catalog(spec.output.catalog.name, spec.output.catalog.properties)
    return catalog.load_table(spec.output.table)


def table_rows(fmt: str, root: StorageRoot, spec: JobSpec) -> list[dict[str, Any]]:
    if fmt == "delta":
        return delta_rows(root)
    return iceberg_table(spec).scan().to_arrow().to_pylist()


def table_files(fmt: str, root: StorageRoot, spec: JobSpec) -> set[str]:
    if fmt == "delta":
        table = deltalake.DeltaTable(root.url_of("table"), storage_options=_delta_options(root))
        return set(table.file_uris())
    return {task.file.file_path for task in iceberg_table(spec).scan().plan_files()}


def job_commits(fmt: str, root: StorageRoot, spec: JobSpec) -> list[str]:
    """The job key of every commit in the table's history, oldest first."""
    if fmt == "delta":
        # The log's commit infos, read as files: DeltaTable.history() hangs on moto's server.
        fs, path = open_fs(root.url_of("table", "_delta_log"), root.storage_options)
        keys = []
        for name in sorted(n for n in fs.ls(path, detail=False) if n.endswith(".json")):
            for line in fs.cat_file(name).decode().splitlines():
                info = json.loads(line).get("commitInfo")
                if info is not None:
                    keys.append(info.get(JOB_KEY, "?"))
        return keys
    snapshots = iceberg_table(spec).snapshots()
    return [s.summary.additional_properties.get(JOB_KEY, "?") for s in snapshots]


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_backfill_then_one_partition_overwritten_holds_each_id_once(
    fmt: str, storage_root: StorageRoot, tmp_path: Path
) -> None:
    write_input(storage_root)
    full = spec_for(storage_root, fmt, tmp_path)
    plan = make_plan(full)
    assert plan.output_partitions == ["date"]
    layout, results = run_shards(full, plan, "full")
    first = commit(full, layout, plan, results)
    assert first.committed_now and first.added_files == len(plan.shards)
    assert first.removed_files == 0

    rows = table_rows(fmt, storage_root, full)
    assert sorted(r["id"] for r in rows) == sorted(
        f"{d}-{i}" for d in DATES for i in range(ROWS_PER_DATE)
    )
    assert all(r["date"] == r["id"][:10] for r in rows)  # partition values came back right
    files_before = table_files(fmt, storage_root, full)

    # The backfill of one day: another spec (its own job folder), overwrite_partitions.
    again = spec_for(
        storage_root, fmt, tmp_path, mode="overwrite_partitions", partition_by=["date"]
    )
    assert job_key(again) != job_key(full)
    day = DATES[1]
    plan2 = only_dates(make_plan(again), [day])
    layout2, results2 = run_shards(again, plan2, "backfill")
    second = commit(again, layout2, plan2, results2)
    assert second.committed_now and second.removed_files == 3  # the day's three old shards

    rows = table_rows(fmt, storage_root, full)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(DATES) * ROWS_PER_DATE  # each id exactly once
    assert {r["run"] for r in rows if r["date"] == day} == {"backfill"}
    assert {r["run"] for r in rows if r["date"] != day} == {"full"}
    files_after = table_files(fmt, storage_root, full)
    untouched = {f for f in files_before if f"date={day}" not in f}
    assert untouched <= files_after  # the other days keep their very files
    assert all(f"date={day}" not in f for f in files_before & files_after)
    assert job_commits(fmt, storage_root, full) == [job_key(full), job_key(again)]

    # A rerun of either commit (a driver killed after committing) adds nothing.
    for spec, lay, pl, res, version in (
        (full, layout, plan, results, first.version),
        (again, layout2, plan2, results2, second.version),
    ):
        rerun = commit(spec, lay, pl, res)
        assert (rerun.committed_now, rerun.version) == (False, version)
    assert job_commits(fmt, storage_root, full) == [job_key(full), job_key(again)]
    assert len(table_rows(fmt, storage_root, full)) == len(DATES) * ROWS_PER_DATE


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_overwrite_mode_replaces_the_whole_table(fmt: str, tmp_path: Path) -> None:
    root = StorageRoot("local", str(tmp_path / "root"))
    write_input(root)
    full = spec_for(root, fmt, tmp_path)
    plan = make_plan(full)
    layout, results = run_shards(full, plan, "full")
    commit(full, layout, plan, results)
    again = spec_for(root, fmt, tmp_path, mode="overwrite", partition_by=["date"])
    plan2 = only_dates(make_plan(again), [DATES[0]])
    layout2, results2 = run_shards(again, plan2, "only-day-1")
    result = commit(again, layout2, plan2, results2)
    assert result.removed_files == len(plan.shards)
    rows = table_rows(fmt, root, full)
    assert {r["date"] for r in rows} == {DATES[0]} and len(rows) == ROWS_PER_DATE


def test_delta_files_leave_out_partition_columns_iceberg_keeps_them(tmp_path: Path) -> None:
    root = StorageRoot("local", str(tmp_path / "root"))
    write_input(root)
    for fmt in ("delta", "iceberg"):
        spec = spec_for(root, fmt, tmp_path)
        plan = make_plan(spec)
        layout, _ = run_shards(spec, plan, fmt)
        found = data_files_found(layout)
        assert set(found) == {s.shard_id for s in plan.shards}
        for shard_id, path in found.items():
            relpath = path.removeprefix(layout.data_dir + "/")
            assert relpath.startswith("date=") and f"part-{layout.job_key}-{shard_id}" in relpath
            names = pq.read_schema(path).names
            assert ("date" in names) == (fmt == "iceberg"), (fmt, names)
            assert path.startswith(str(tmp_path / "root" / "table"))
        assert layout.root.endswith(f"table/_batchmt/{layout.job_key}")


def test_partition_values_are_escaped_like_hive_and_read_back() -> None:
    partition = {"date": "2026/11 01", "lang": "de=x%"}
    path = hive_path(partition)
    assert path == "date=2026%2F11%2001/lang=de%3Dx%25"
    assert parse_hive_path(path + "/part-00000.parquet") == partition


def test_delta_table_of_other_partitions_is_refused_with_the_key_to_change(
    tmp_path: Path,
) -> None:
    root = StorageRoot("local", str(tmp_path / "root"))
    write_input(root)
    deltalake.write_deltalake(
        root.url_of("table"),
        pa.table({"id": ["x"], "text": ["y"], "lang": ["de"]}),
        partition_by=["lang"],
    )
    spec = spec_for(root, "delta", tmp_path)
    plan = make_plan(spec)
    layout, results = run_shards(spec, plan, "full")
    with pytest.raises(TableCommitError, match=r"output\.partition_by"):
        commit(spec, layout, plan, results)
    assert find_commit(spec.output, layout) is None
    assert isinstance(CommitResult("delta", 0, True).to_dict(), dict)


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_jobs_committing_at_once_all_land_once(fmt: str, tmp_path: Path) -> None:
    """Several jobs write one table, racing to create it and to commit: the losers retry
    from the new table state; no commit is lost or doubled."""
    from concurrent.futures import ThreadPoolExecutor

    root = StorageRoot("local", str(tmp_path / "root"))
    write_input(root)
    jobs = []
    for day in DATES:
        spec = spec_for(root, fmt, tmp_path).model_copy(update={"job_name": f"day-{day}"})
        plan = only_dates(make_plan(spec), [day])
        layout, results = run_shards(spec, plan, day)
        jobs.append((spec, layout, plan, results))
    with ThreadPoolExecutor(len(jobs)) as pool:
        done = list(pool.map(lambda job: commit(*job), jobs))
    assert all(r.committed_now for r in done)
    ids = [r["id"] for r in table_rows(fmt, root, jobs[0][0])]
    assert len(ids) == len(set(ids)) == len(DATES) * ROWS_PER_DATE
    assert sorted(job_commits(fmt, root, jobs[0][0])) == sorted(job_key(j[0]) for j in jobs)
