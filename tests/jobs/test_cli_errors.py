"""A job that cannot run exits 2 with one line that names the problem, before any work."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from batchmt.jobs.cli import main


def config(tmp_path: Path, **overrides: object) -> str:
    data: dict[str, object] = {
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": str(tmp_path / "in.parquet")},
        "output": {"path": str(tmp_path / "out")},
        "model": {"name_or_path": str(tmp_path / "no-model")},
    }
    data.update(overrides)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_missing_text_column_names_it_and_the_columns_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pq.write_table(pa.table({"id": ["a"], "body": ["x"], "lang": ["en"]}), tmp_path / "in.parquet")
    assert main(["plan", config(tmp_path)]) == 2
    err = one_line_error(capsys)
    assert "'text'" in err and "body" in err and "lang" in err and "input.text_column" in err
    assert not (tmp_path / "out").exists()


def test_input_with_result_columns_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pq.write_table(
        pa.table({"id": ["a"], "text": ["x"], "status": ["new"]}), tmp_path / "in.parquet"
    )
    assert main(["run", config(tmp_path)]) == 2
    assert "status" in one_line_error(capsys)


def test_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", config(tmp_path)]) == 2
    assert "in.parquet" in one_line_error(capsys)


def test_bad_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", config(tmp_path), "--set", "model.quantization=fp4"]) == 2
    assert "model.quantization" in one_line_error(capsys)


def test_plan_prints_json_with_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = pa.table({"id": [str(i) for i in range(10)], "text": ["x"] * 10})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=3)
    assert main(["plan", config(tmp_path), "--json", "--set", "sharding.rows_per_shard=4"]) == 0
    import json

    plan = json.loads(capsys.readouterr().out)
    assert plan["num_rows"] == 10
    assert [s["num_rows"] for s in plan["shards"]] == [4, 4, 2]
