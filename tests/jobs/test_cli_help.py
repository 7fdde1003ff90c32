"""What `batchmt` says about itself: its version, examples and exit codes in --help, and a
plan a person can read (JSON for machines with --json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import batchmt
from batchmt.jobs.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"batchmt {batchmt.__version__}"


def test_help_has_examples_and_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "batchmt run configs/demo.yaml" in text
    for code in ("0 ", "1 ", "2 ", "130"):
        assert f"\n  {code}" in text, code


def test_plan_is_a_table_by_default_and_json_when_asked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    argv = ["plan", "configs/demo.yaml", "--set", "sharding.rows_per_shard=16"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0].startswith("plan: Parquet configs/demo/corpus.parquet") and "49 rows" in lines[0]
    )
    assert lines[1].split() == ["shard", "rows", "files", "partition"]
    rows = [line.split() for line in lines[2:]]
    assert sum(int(r[1]) for r in rows) == 49 and all(r[2] == "1" for r in rows)
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_rows"] == 49
