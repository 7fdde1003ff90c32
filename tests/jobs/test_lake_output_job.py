"""`batchmt run` into data-lake outputs end to end (local Ray, the tiny Marian model): a
partitioned Parquet folder, and Delta / Iceberg tables (an Iceberg SQL catalog on SQLite)
written by a three-day run and then a one-day overwrite_partitions backfill, on a local
folder and on S3 (moto's server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

import batchmt
from batchmt.jobs.cli import main
from batchmt.pipeline.outputs.tables.common import JOB_KEY
from batchmt.pipeline.storage.fs import open_fs
from tests.conftest import StorageRoot
from tests.jobs.corpora import corpus_table

pytestmark = pytest.mark.usefixtures("ray_local")
deltalake = pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg")

DATES = ["2026-11-01", "2026-11-02", "2026-11-03"]
PER_DAY = 30


def write_days(root: StorageRoot, folder: str, dates: list[str]) -> list[str]:
    """A hive-partitioned input folder `<folder>/date=<day>/part.parquet`; the ids."""
    ids = []
    for k, date in enumerate(DATES):
        table = corpus_table(PER_DAY, seed=k, awkward=False)
        table = table.set_column(0, "id", pa.array([f"{date}-{i:03d}" for i in range(PER_DAY)]))
        if date in dates:
            root.write_parquet(f"{folder}/date={date}/part.parquet", table)
            ids += table.column("id").to_pylist()
    return ids


def lake_config(
    root: StorageRoot,
    model: Path,
    tmp_path: Path,
    folder: str,
    name: str,
    input_filter: str | None = None,
    **output: Any,
) -> str:
    out: dict[str, Any] = {
        "path": root.url_of("table"),
        "storage_options": root.storage_options,
        **output,
    }
    if out.get("format") == "iceberg":
        properties = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db"}
        properties["warehouse"] = (
            root.url_of("warehouse") if root.kind == "s3" else f"file://{tmp_path}/warehouse"
        )
        if root.kind == "s3":
            properties.update(
                {
                    "s3.endpoint": root.storage_options["endpoint_url"],
                    "s3.access-key-id": "testing",
                    "s3.secret-access-key": "testing",
                    "s3.region": "us-east-1",
                }
            )
        out.update(table="lake.translations", catalog={"name": "lake", "properties": properties})
    config = {
        "job_name": "nightly",
        "source_lang": "en",
        "target_lang": "de",
        "input": {
            "path": root.url_of(folder),
            "storage_options": root.storage_options,
            **({"filter": input_filter} if input_filter else {}),
        },
        "output": out,
        "model": {"name_or_path": str(model), "max_input_tokens": 40},
        "decoding": {"num_beams": 1, "max_new_tokens": 8},
        "workers": {"num_workers": 1},
        "sharding": {"rows_per_shard": 16},
        "quality": {"sample_per_shard": 2, "fallback": {"enabled": False}},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def table_rows(fmt: str, root: StorageRoot, config: str) -> list[dict[str, Any]]:
    if fmt == "delta":
        from batchmt.pipeline.storage.object_store import delta_rs_options

        options = delta_rs_options(root.url_of("table"), root.storage_options)
        table = deltalake.DeltaTable(root.url_of("table"), storage_options=options)
        return table.to_pyarrow_table(columns=["id", "date", "status"]).to_pylist()
    return (
        iceberg_table(config).scan(selected_fields=("id", "date", "status")).to_arrow().to_pylist()
    )


def iceberg_table(config: str) -> Any:
    from batchmt.pipeline.outputs.tables.iceberg import load_catalog

    output = yaml.safe_load(Path(config).read_text())["output"]
    catalog = load_catalog(output["catalog"]["name"], output["catalog"]["properties"])
    return catalog.load_table(output["table"])


def table_files(fmt: str, root: StorageRoot, config: str) -> set[str]:
    if fmt == "delta":
        from batchmt.pipeline.storage.object_store import delta_rs_options

        options = delta_rs_options(root.url_of("table"), root.storage_options)
        return set(deltalake.DeltaTable(root.url_of("table"), storage_options=options).file_uris())
    return {t.file.file_path for t in iceberg_table(config).scan().plan_files()}


def commits(fmt: str, root: StorageRoot, config: str) -> list[str]:
    """The job key recorded by each commit of the table, oldest first."""
    if fmt == "iceberg":
        return [
            s.summary.additional_properties.get(JOB_KEY, "?")
            for s in iceberg_table(config).snapshots()
        ]
    fs, path = open_fs(root.url_of("table", "_delta_log"), root.storage_options)
    keys = []
    for name in sorted(n for n in fs.ls(path, detail=False) if n.endswith(".json")):
        for line in fs.cat_file(name).decode().splitlines():
            info = json.loads(line).get("commitInfo")
            if info is not None:
                keys.append(info.get(JOB_KEY, "?"))
    return keys


def success_of(root: StorageRoot) -> list[dict[str, Any]]:
    """Every job's _SUCCESS under the table's bookkeeping folder, in name order."""
    fs, path = open_fs(root.url_of("table", "_batchmt"), root.storage_options)
    return [
        json.loads(fs.cat_file(f"{job}/_SUCCESS"))
        for job in sorted(fs.ls(path, detail=False))
        if fs.exists(f"{job}/_SUCCESS")
    ]


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_backfill_of_one_day_replaces_exactly_that_partition(
    fmt: str,
    storage_root: StorageRoot,
    tiny_marian: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = write_days(storage_root, "in", DATES)
    full = lake_config(storage_root, tiny_marian, tmp_path, "in", "full", format=fmt)
    assert main(["run", full, "--no-progress"]) == 0
    assert f"{fmt} table" in capsys.readouterr().out

    rows = table_rows(fmt, storage_root, full)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert all(r["date"] == r["id"][:10] for r in rows)
    before = table_files(fmt, storage_root, full)

    # The backfill: only 2026-11-02 again (input.filter), replacing that partition.
    redo = lake_config(
        storage_root,
        tiny_marian,
        tmp_path,
        "in",
        "redo",
        input_filter=f"date = '{DATES[1]}'",
        format=fmt,
        mode="overwrite_partitions",
        partition_by=["date"],
    )
    assert main(["run", redo, "--no-progress"]) == 0
    rows = table_rows(fmt, storage_root, full)
    assert sorted(r["id"] for r in rows) == sorted(ids)  # each id exactly once
    after = table_files(fmt, storage_root, full)
    kept = {f for f in before if f"date={DATES[1]}" not in f}
    assert kept <= after and not {f for f in before if f"date={DATES[1]}" in f} & after
    successes = success_of(storage_root)
    assert len(successes) == 2
    by_mode = {s["table"]["mode"]: s["table"]["job_key"] for s in successes}
    keys = [by_mode["append"], by_mode["overwrite_partitions"]]
    assert commits(fmt, storage_root, full) == keys  # one commit per job
    for success in successes:
        assert success["table"]["committed_now"] is True and success["partition_by"] == ["date"]

    # A rerun of the backfill adds nothing; status names each job's committed version.
    assert main(["run", redo, "--no-progress"]) == 0
    assert commits(fmt, storage_root, full) == keys
    capsys.readouterr()
    options = [f"--storage-option={k}={v}" for k, v in storage_root.storage_options.items()]
    assert main(["status", storage_root.url_of("table"), "--json", *options]) == 0
    status = json.loads(capsys.readouterr().out)
    versions = sorted(str(j["table"]["committed_version"]) for j in status["jobs"])
    expected = sorted(str(s["table"]["committed_version"]) for s in successes)
    assert versions == expected and all(j["success"] for j in status["jobs"])


def test_partitioned_parquet_output_has_hive_folders(
    tiny_marian: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = StorageRoot("local", str(tmp_path / "root"))
    ids = write_days(root, "in", DATES)
    config = lake_config(root, tiny_marian, tmp_path, "in", "parquet")
    data = yaml.safe_load(Path(config).read_text())
    data["output"] = {"path": root.url_of("out")}
    Path(config).write_text(yaml.safe_dump(data))
    assert main(["run", config, "--no-progress"]) == 0

    out = Path(root.url_of("out"))
    files = sorted(p.relative_to(out / "data").as_posix() for p in (out / "data").rglob("*"))
    files = [f for f in files if f.endswith(".parquet")]
    assert {f.split("/")[0] for f in files} == {f"date={d}" for d in DATES}
    assert all(f.split("/")[1].startswith("part-") for f in files)
    assert all("date" not in pq.read_schema(out / "data" / f).names for f in files)
    # Hive readers get the column back from the folders; so does read_output.
    dataset = ds.dataset(out / "data", format="parquet", partitioning="hive").to_table()
    assert sorted(dataset.column("id").to_pylist()) == sorted(ids)
    table = batchmt.read_output(out)
    assert sorted(zip(table["id"].to_pylist(), table["date"].to_pylist(), strict=True)) == sorted(
        (i, i[:10]) for i in ids
    )
    assert main(["verify", config]) == 0
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert "partitions: date" in capsys.readouterr().out


def test_increments_into_a_delta_table_commit_each_new_day_once(
    tiny_marian: Path, tmp_path: Path
) -> None:
    """input.since: last, run every day with the same config: each run gets its own job
    folder and commit (the same spec would otherwise find yesterday's run complete)."""
    root = StorageRoot("local", str(tmp_path / "root"))
    ids = write_days(root, "in", DATES[:1])
    config = lake_config(root, tiny_marian, tmp_path, "in", "daily", format="delta")
    data = yaml.safe_load(Path(config).read_text())
    data["input"]["since"] = "last"
    Path(config).write_text(yaml.safe_dump(data))
    assert main(["run", config, "--no-progress"]) == 0
    ids += write_days(root, "in", DATES[1:2])  # the next day arrives
    assert main(["run", config, "--no-progress"]) == 0
    assert main(["run", config, "--no-progress"]) == 0  # nothing new: no commit

    assert sorted(r["id"] for r in table_rows("delta", root, config)) == sorted(ids)
    keys = commits("delta", root, config)
    assert len(keys) == len(set(keys)) == 2
    folders = sorted(p.name for p in (Path(root.url_of("table")) / "_batchmt").iterdir())
    assert set(keys) <= set(folders) and all(k.startswith("nightly-") for k in folders)
