"""`batchmt run` end to end from a Delta table whose folder still holds removed files:
the output has exactly the live ids, each once; `batchmt plan` says what it read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import yaml

from batchmt.jobs.cli import main
from tests.jobs.corpora import corpus_table

deltalake = pytest.importorskip("deltalake")

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


def config(tmp_path: Path, model: Path, **input_keys: Any) -> str:
    data = {
        "job_name": "lake-in",
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": str(tmp_path / "table"), **input_keys},
        "output": {"path": str(tmp_path / "out")},
        "model": {"name_or_path": str(model), "max_input_tokens": 40},
        "decoding": {"num_beams": 1, "max_new_tokens": 8},
        "workers": {"num_workers": 1},
        "sharding": {"rows_per_shard": 20},
        "quality": {"sample_per_shard": 0, "fallback": {"enabled": False}},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_run_from_a_delta_table_translates_exactly_the_live_rows(
    tmp_path: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = corpus_table(60, awkward=False)
    table = table.append_column("region", pa.array([["eu", "us"][i % 2] for i in range(60)]))
    path = str(tmp_path / "table")
    deltalake.write_deltalake(path, table.slice(0, 40), partition_by=["region"])
    # Overwrite: the first files stay in the folder (not vacuumed) but are no longer live.
    deltalake.write_deltalake(path, table.slice(30), mode="overwrite", partition_by=["region"])
    deltalake.DeltaTable(path).delete("id = 'r00031'")
    live = sorted(i for i in table.slice(30).column("id").to_pylist() if i != "r00031")

    job = config(tmp_path, tiny_marian, filter="region in ('eu', 'us')")
    assert main(["plan", job, "--json"]) == 0
    printed = capsys.readouterr()
    plan = json.loads(printed.out)
    assert plan["num_rows"] == len(live) and plan["source"]["version"] == 2
    assert plan["partition_columns"] == ["region"] == plan["output_partitions"]
    assert "Delta table" in printed.err and "version 2" in printed.err
    assert "kept 2 of 2 file(s)" in printed.err

    assert main(["run", job, "--no-progress"]) == 0
    assert "succeeded" in capsys.readouterr().out
    # The output is partitioned like the input: data/region=eu/..., the column in the path.
    out = ds.dataset(
        str(tmp_path / "out" / "data"), format="parquet", partitioning="hive"
    ).to_table()
    ids = out.column("id").to_pylist()
    assert sorted(ids) == live  # each live id once; none of the removed files' rows
    by_id = {r["id"]: r for r in out.to_pylist()}
    assert all(by_id[i]["region"] == ["eu", "us"][int(i[1:]) % 2] for i in live)

    # Verify reads the frozen plan's files: every live id accounted for.
    assert main(["verify", job]) == 0
    capsys.readouterr()

    # The table moves on: a rerun resumes the frozen version 2 (nothing left to do) ...
    deltalake.write_deltalake(path, table.slice(0, 5), mode="overwrite", partition_by=["region"])
    assert main(["run", job, "--no-progress"]) == 0
    capsys.readouterr()
    again = ds.dataset(
        str(tmp_path / "out" / "data"), format="parquet", partitioning="hive"
    ).to_table()
    assert sorted(again.column("id").to_pylist()) == live
    # ... until version 2's files are vacuumed: then the resume refuses, in one line.
    deltalake.DeltaTable(path).vacuum(
        retention_hours=0, enforce_retention_duration=False, dry_run=False
    )
    assert main(["run", job, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "version 2 is gone" in err and "output.overwrite=true" in err
    assert len(err.splitlines()) == 1


def test_run_from_an_iceberg_catalog_table(
    tmp_path: Path,
    tiny_marian: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No input.path at all: the table comes from its catalog, the rows from its files (and
    an output under the working directory is not "inside the input")."""
    pytest.importorskip("pyiceberg.catalog.sql")
    from pyiceberg.catalog import load_catalog

    properties = {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path}/catalog.db",
        "warehouse": f"file://{tmp_path}/wh",
    }
    catalog = load_catalog("lake", **properties)
    catalog.create_namespace("ns")
    table = corpus_table(30, awkward=False)
    iceberg = catalog.create_table("ns.docs", schema=table.schema)
    iceberg.append(table)
    iceberg.delete("id == 'r00007'")  # pyiceberg rewrites the file without it
    job = config(tmp_path, tiny_marian)
    data = yaml.safe_load(Path(job).read_text())
    data["input"] = {"table": "ns.docs", "catalog": {"name": "lake", "properties": properties}}
    Path(job).write_text(yaml.safe_dump(data))

    monkeypatch.chdir(tmp_path)
    assert main(["run", job, "--no-progress"]) == 0
    assert "succeeded" in capsys.readouterr().out
    out = ds.dataset(str(tmp_path / "out" / "data"), format="parquet").to_table()
    expected = [i for i in table.column("id").to_pylist() if i != "r00007"]
    assert sorted(out.column("id").to_pylist()) == expected
