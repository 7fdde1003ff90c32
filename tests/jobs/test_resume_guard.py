"""A resume never mixes inputs and never trusts a tampered manifest (issue #15): after a run
that stopped with shards left, a rewritten input file or an edited `_manifest.json` makes
`batchmt run` refuse in one line (exit 2) before any work, naming what is wrong."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from batchmt.jobs.cli import main
from batchmt.workers.faults import FAULT_SHARD_ENV
from tests.jobs.corpora import corpus_table, local_job_config

ROWS = 60


@pytest.fixture(scope="module")
def stopped_job(
    ray_local: None, tiny_marian: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path]]:
    """(job folder, pristine copy of it) after a run that stopped with shard 00001 failed
    (its worker dies on it). The spec names the folder, so tests restore it in place."""
    base = tmp_path_factory.mktemp("stopped")
    pq.write_table(corpus_table(ROWS, awkward=False), base / "in.parquet", row_group_size=10)
    pq.write_table(corpus_table(10, seed=9, awkward=False), base / "other.parquet")
    config = local_job_config(
        base,
        tiny_marian,
        decoding={"num_beams": 1, "max_new_tokens": 8},
        workers={"num_workers": 1, "num_cpus": 1, "max_shard_attempts": 1},
        sharding={"rows_per_shard": 20},
    )
    os.environ[FAULT_SHARD_ENV] = "00001"
    try:
        assert main(["run", str(config), "--no-progress"]) == 1
    finally:
        del os.environ[FAULT_SHARD_ENV]
    assert not (base / "out" / "_SUCCESS").exists()
    pristine = tmp_path_factory.mktemp("pristine")
    shutil.copytree(base, pristine, dirs_exist_ok=True)
    yield base, pristine


@pytest.fixture
def job(stopped_job: tuple[Path, Path]) -> Path:
    """The stopped job as it was left (restored before each test); its config path."""
    base, pristine = stopped_job
    shutil.rmtree(base)
    shutil.copytree(pristine, base)  # copy2 keeps mtimes: the input is "unchanged"
    return base / "job.yaml"


def _refusal(config: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["run", str(config), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_input_rewritten_between_kill_and_resume_is_refused(
    job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(p.name for p in (job.parent / "out" / "data").iterdir())
    # Same file name and row count, other rows: a resume would mix two versions.
    pq.write_table(
        corpus_table(ROWS, seed=3, awkward=False), job.parent / "in.parquet", row_group_size=10
    )
    err = _refusal(job, capsys)
    assert "in.parquet" in err and "changed since" in err
    assert "--set output.overwrite=true" in err
    assert sorted(p.name for p in (job.parent / "out" / "data").iterdir()) == before


def _edit(config: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = config.parent / "out" / "_manifest.json"
    data = json.loads(path.read_text())
    change(data["plan"])
    path.write_text(json.dumps(data))


def _escape(plan: dict[str, Any]) -> None:
    plan["shards"][1]["shard_id"] = "../../../escaped"


def _foreign_rows(plan: dict[str, Any]) -> None:
    for piece in plan["shards"][1]["slices"]:
        piece["path"] = piece["path"].replace("in.parquet", "other.parquet")


def _double_rows(plan: dict[str, Any]) -> None:
    plan["shards"][1]["slices"] = plan["shards"][0]["slices"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (_escape, "not plain digits"),
        (_foreign_rows, "does not list"),
        (_double_rows, "read twice"),
    ],
)
def test_tampered_manifest_is_refused_before_any_write(
    job: Path,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[dict[str, Any]], None],
    why: str,
) -> None:
    _edit(job, change)
    root = job.parent.parent
    before = sorted(str(p) for p in root.rglob("*") if "_lease" not in str(p))
    err = _refusal(job, capsys)
    assert why in err and "_manifest.json cannot be resumed" in err
    assert sorted(str(p) for p in root.rglob("*") if "_lease" not in str(p)) == before


def test_untouched_stopped_job_resumes(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(job), "--no-progress"]) == 0
    assert "resumed:" in capsys.readouterr().out
    assert main(["verify", str(job)]) == 0
