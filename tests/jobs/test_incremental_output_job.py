"""`input.since: last` end to end (local Ray, the tiny Marian model): a Delta input grows by
one partition between runs into a plain Parquet output and into a Delta table. Each run has
its own folder and run id, translates exactly the new rows, an updated row replaces its old
translation, a run with nothing new adds nothing, and the output holds every id once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

import batchmt
from batchmt.jobs.cli import main
from tests.jobs.corpora import corpus_table

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]
deltalake = pytest.importorskip("deltalake")

PER_DAY = 10


def day(date: str, seed: int) -> pa.Table:
    table = corpus_table(PER_DAY, seed=seed, awkward=False).select(["id", "text"])
    table = table.set_column(0, "id", pa.array([f"{date}-{i:03d}" for i in range(PER_DAY)]))
    return table.append_column("date", pa.array([date] * PER_DAY))


def config(tmp_path: Path, model: Path, fmt: str) -> str:
    spec: dict[str, Any] = {
        "job_name": "nightly",
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": str(tmp_path / "in"), "since": "last"},
        "output": {"path": str(tmp_path / "out"), "format": fmt},
        "model": {"name_or_path": str(model), "max_input_tokens": 40},
        "decoding": {"num_beams": 1, "max_new_tokens": 8},
        "workers": {"num_workers": 1},
        "sharding": {"rows_per_shard": 16},
        "quality": {"sample_per_shard": 1, "fallback": {"enabled": False}},
    }
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def output_rows(fmt: str, out: Path) -> list[dict[str, Any]]:
    if fmt == "delta":
        table = deltalake.DeltaTable(str(out)).to_pyarrow_table(columns=["id", "text", "status"])
    else:
        table = batchmt.read_output(out).select(["id", "text", "status"])
    return sorted(table.to_pylist(), key=lambda r: str(r["id"]))


def successes(out: Path) -> list[dict[str, Any]]:
    """Every run's _SUCCESS, oldest first."""
    found = [json.loads(p.read_text()) for p in (out / "_batchmt").glob("*/_SUCCESS")]
    return sorted(found, key=lambda s: str(s["finished_at"]) + str(s["run_id"]))


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
def test_since_last_translates_only_new_rows_and_keeps_each_id_once(
    fmt: str, tiny_marian: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = str(tmp_path / "in")
    out = tmp_path / "out"
    deltalake.write_deltalake(source, day("2026-11-01", 1), partition_by=["date"])
    spec = config(tmp_path, tiny_marian, fmt)
    assert main(["run", spec, "--no-progress"]) == 0
    first = output_rows(fmt, out)
    assert len(first) == PER_DAY

    # Night two: one new partition; only its rows are translated.
    deltalake.write_deltalake(source, day("2026-11-02", 2), mode="append", partition_by=["date"])
    assert main(["run", spec, "--no-progress"]) == 0
    second = successes(out)[-1]
    assert (second["rows_new"], second["rows_replaced"]) == (PER_DAY, 0)
    rows = output_rows(fmt, out)
    assert [r["id"] for r in rows] == sorted({r["id"] for r in rows})  # every id once
    assert len(rows) == 2 * PER_DAY

    # An updated row: its file (the whole day-one partition) is new again; the ten rows
    # translated again replace their older translations, never sit beside them.
    table = deltalake.DeltaTable(source)
    table.update(predicate="id = '2026-11-01-003'", updates={"text": "'The house is green.'"})
    capsys.readouterr()
    assert main(["run", spec, "--no-progress"]) == 0
    assert "10 new rows, 10 older translations replaced" in capsys.readouterr().out
    third = successes(out)[-1]
    assert (third["rows_new"], third["rows_replaced"]) == (PER_DAY, PER_DAY)
    rows = output_rows(fmt, out)
    assert len(rows) == 2 * PER_DAY and len({r["id"] for r in rows}) == 2 * PER_DAY
    updated = next(r for r in rows if r["id"] == "2026-11-01-003")
    assert updated["text"] == "The house is green."

    # verify: all runs together (a table: its live files) hold each input id once
    capsys.readouterr()
    assert main(["verify", spec, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["input_rows"], report["output_rows"]) == (2 * PER_DAY, 2 * PER_DAY)

    # Nothing new: a run that translates and adds nothing.
    assert main(["run", spec, "--no-progress"]) == 0
    fourth = successes(out)[-1]
    assert (fourth["rows_new"], fourth["rows_replaced"]) == (0, 0)
    assert output_rows(fmt, out) == rows

    # status lists the four runs, each with its own run id and counts.
    capsys.readouterr()
    assert main(["status", str(out), "--json"]) == 0
    runs = [job["run"] for job in json.loads(capsys.readouterr().out)["jobs"]]
    assert len(runs) == 4 and len({r["run_id"] for r in runs}) == 4
    assert sorted(r["rows_new"] for r in runs) == [0, PER_DAY, PER_DAY, PER_DAY]
    assert sum(r["rows_replaced"] for r in runs) == PER_DAY
