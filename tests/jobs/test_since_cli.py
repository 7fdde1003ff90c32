"""`input.since` as a user writes it, through the CLI: timestamps unquoted in YAML (a
datetime to YAML) and through `--set`, a time in the future, and a run that planned nothing
never hiding files from the next `since: last` run. Nothing is translated (no Ray)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchmt.jobs.cli import main

SPELLINGS = [
    "2020-01-01T00:00:00+00:00",
    "2020-01-01T00:00:00Z",
    "2020-01-01T00:00:00",
    "2020-01-01 00:00:00",
    "2020-01-01",
]


def write_input(folder: Path, name: str, ids: list[str], mtime: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "text": [f"text {i}" for i in ids]}), folder / name)
    os.utime(folder / name, (mtime, mtime))


def write_config(tmp_path: Path, since_line: str, model: Path | None = None) -> str:
    # Written by hand, not by yaml.safe_dump: the timestamp stays unquoted, as users write it.
    path = tmp_path / "job.yaml"
    path.write_text(
        "job_name: nightly\nsource_lang: en\ntarget_lang: de\n"
        f"input:\n  path: {tmp_path / 'in'}\n  {since_line}\n"
        f"output:\n  path: {tmp_path / 'out'}\n"
        f"model:\n  name_or_path: {model or tmp_path / 'no-model'}\n"
    )
    return str(path)


def planned(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads(capsys.readouterr().out)
    return plan


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_since_timestamp_unquoted_in_yaml_and_through_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spelling: str
) -> None:
    write_input(tmp_path / "in", "old.parquet", ["a"], mtime=1_500_000_000)  # 2017
    write_input(tmp_path / "in", "new.parquet", ["b", "c"], mtime=1_700_000_000)  # 2023
    assert main(["plan", write_config(tmp_path, f"since: {spelling}"), "--json"]) == 0
    assert planned(capsys)["num_rows"] == 2  # only the file written after 2020
    config = write_config(tmp_path, "since: last")
    assert main(["plan", config, "--set", f"input.since={spelling}", "--json"]) == 0
    assert planned(capsys)["num_rows"] == 2


def test_since_in_the_future_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_input(tmp_path / "in", "a.parquet", ["a"], mtime=1_700_000_000)
    for verb in ("plan", "run"):
        assert main([verb, write_config(tmp_path, "since: 2099-01-01T00:00:00+00:00")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "in the future" in err, err
    assert not (tmp_path / "out").exists()


def test_a_run_that_planned_nothing_does_not_hide_files_from_since_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_marian: Path
) -> None:
    # Both files are older than the time given: the run plans nothing and exits 0 (no
    # actor starts), but it saw both files. The next `since: last` run must still plan them.
    write_input(tmp_path / "in", "a.parquet", ["a"], mtime=1_500_000_000)
    write_input(tmp_path / "in", "b.parquet", ["b"], mtime=1_600_000_000)
    explicit = write_config(tmp_path, "since: 2024-01-01T00:00:00+00:00", tiny_marian)
    assert main(["run", explicit, "--no-progress"]) == 0
    assert list((tmp_path / "out" / "_batchmt").glob("*/_SUCCESS"))
    capsys.readouterr()
    assert main(["plan", write_config(tmp_path, "since: last"), "--json"]) == 0
    assert planned(capsys)["num_rows"] == 2
