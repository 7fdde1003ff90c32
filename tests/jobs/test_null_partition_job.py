"""A null partition value round-trips (local Ray, the tiny Marian model): a hive input with a
`lang=__HIVE_DEFAULT_PARTITION__` folder (how Hive and Spark write a null) is translated into
a Parquet folder, a Delta table and an Iceberg table, each partitioned by `lang` (the
default: the input's partitions). Every row lands in the null partition of the output, and
`batchmt verify` passes on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import batchmt
from batchmt.jobs.cli import main

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]
deltalake = pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg")

NULL_FOLDER = "lang=__HIVE_DEFAULT_PARTITION__"


def write_input(folder: Path) -> None:
    for part, ids in ((NULL_FOLDER, ["n1", "n2", "n3"]), ("lang=de", ["d1", "d2"])):
        (folder / part).mkdir(parents=True)
        texts = [f"The house number {i} is small." for i in ids]
        pq.write_table(pa.table({"id": ids, "text": texts}), folder / part / "part-0.parquet")


def config(tmp_path: Path, model: Path, fmt: str) -> str:
    output: dict[str, Any] = {"path": str(tmp_path / f"out-{fmt}"), "format": fmt}
    if fmt == "iceberg":
        properties = {
            "type": "sql",
            "uri": f"sqlite:///{tmp_path}/catalog.db",
            "warehouse": f"file://{tmp_path}/warehouse",
        }
        output.update(table="lake.nulls", catalog={"name": "lake", "properties": properties})
    spec = {
        "job_name": f"nulls-{fmt}",
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": str(tmp_path / "in")},
        "output": output,
        "model": {"name_or_path": str(model), "max_input_tokens": 40},
        "decoding": {"num_beams": 1, "max_new_tokens": 8},
        "workers": {"num_workers": 1, "max_shard_attempts": 1},
        "quality": {"sample_per_shard": 1, "fallback": {"enabled": False}},
    }
    path = tmp_path / f"{fmt}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def by_lang(rows: list[dict[str, Any]]) -> dict[str | None, list[str]]:
    out: dict[str | None, list[str]] = {}
    for row in rows:
        out.setdefault(row["lang"], []).append(row["id"])
    return {k: sorted(v) for k, v in out.items()}


def test_null_partition_rows_are_translated_into_the_null_partition(
    tmp_path: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_input(tmp_path / "in")
    expected = {None: ["n1", "n2", "n3"], "de": ["d1", "d2"]}
    for fmt in ("parquet", "delta", "iceberg"):
        job = config(tmp_path, tiny_marian, fmt)
        assert main(["run", job, "--no-progress"]) == 0, capsys.readouterr().err
        out = tmp_path / f"out-{fmt}"
        if fmt == "parquet":
            assert len(list((out / "data" / NULL_FOLDER).glob("*.parquet"))) == 1
            table = batchmt.read_output(out)
        elif fmt == "delta":
            assert len(list((out / NULL_FOLDER).glob("*.parquet"))) == 1
            table = deltalake.DeltaTable(str(out)).to_pyarrow_table()
        else:
            from pyiceberg.catalog import load_catalog

            catalog = load_catalog(
                "lake",
                type="sql",
                uri=f"sqlite:///{tmp_path}/catalog.db",
                warehouse=f"file://{tmp_path}/warehouse",
            )
            table = catalog.load_table("lake.nulls").scan().to_arrow()
        rows = table.select(["id", "lang", "status"]).to_pylist()
        assert by_lang(rows) == expected, fmt
        assert {r["status"] for r in rows} <= {"ok", "ok_split"}, rows
        capsys.readouterr()
        assert main(["verify", job, "--json"]) == 0, capsys.readouterr().err
        report = json.loads(capsys.readouterr().out)
        assert report["ok"] and report["input_rows"] == report["output_rows"] == 5
