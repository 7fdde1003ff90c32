"""The fault suite, part two (`make faults`): nightly `input.since: last` runs into Delta and
Iceberg tables while replicas are SIGKILLed mid-shard and every night's first driver dies at a
random point: mid-dispatch (SIGKILL), just before its table commit or just after it (the
driver's own exit points, as a kill there would). A later night rewrites an earlier day's file
(an update), so its rows must replace their older translations, never sit beside them.

After every night: the table holds each input id exactly once; at the end `verify` agrees and a
run with nothing new commits nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from batchmt.jobs.cli import main
from batchmt.jobs.driver import EXIT_AT_ENV
from tests.conftest import StorageRoot
from tests.faults.test_fault_suite import SEED, ActorKiller
from tests.jobs.corpora import corpus_table
from tests.jobs.drivers import descendants, kill_all, output, start_driver, wait_for
from tests.jobs.test_lake_output_job import commits, lake_config, table_rows

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("BATCHMT_FAULTS") != "1", reason="the fault suite runs with `make faults`"
    ),
]
pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg")

NIGHTS = ["2026-11-01", "2026-11-02", "2026-11-03"]
PER_DAY, ROWS_PER_SHARD = 240, 20
KILLS = ("sigkill", "before_table_commit", "after_table_commit")


def _day(root: StorageRoot, date: str, seed: int, edited: str | None = None) -> list[str]:
    table = corpus_table(PER_DAY, seed=seed, awkward=False).select(["id", "text"])
    ids = [f"{date}-{i:04d}" for i in range(PER_DAY)]
    table = table.set_column(0, "id", pa.array(ids))
    if edited is not None:  # an update: the day's file rewritten with one row's new text
        texts = table.column("text").to_pylist()
        texts[3] = edited
        table = table.set_column(1, "text", pa.array(texts))
    root.write_parquet(f"in/date={date}/part.parquet", table, row_group_size=40)
    return ids


def _markers(table: Path) -> int:
    return sum(len(list(job.glob("_completions/*"))) for job in table.glob("_batchmt/*"))


def _config(root: StorageRoot, model: Path, tmp_path: Path, fmt: str) -> str:
    path = lake_config(root, model, tmp_path, "in", f"nightly-{fmt}", format=fmt)
    spec: dict[str, Any] = yaml.safe_load(Path(path).read_text())
    spec["input"]["since"] = "last"
    spec["sharding"] = {"rows_per_shard": ROWS_PER_SHARD}
    # More attempts than replica kills in one run: a shard never runs out of them.
    spec["workers"] = {"num_workers": 2, "num_cpus": 1, "max_shard_attempts": 6}
    Path(path).write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_nightly_increments_into_tables_survive_killed_replicas_and_drivers(
    fmt: str, tiny_marian: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    rng = random.Random(SEED + (fmt == "iceberg"))
    root = StorageRoot("local", str(tmp_path / "root"))
    config = _config(root, tiny_marian, tmp_path, fmt)
    table_dir = Path(root.url_of("table"))
    expected: set[str] = set()
    kinds: list[str] = []
    reruns = 0
    with ActorKiller(rng, limit=100, per_run=2) as killer:
        for night, date in enumerate(NIGHTS):
            expected |= set(_day(root, date, seed=night))
            if night == 2:  # the first day's file rewritten: its rows come back as new
                _day(root, NIGHTS[0], seed=0, edited="The house on the corner is green.")
            kind = rng.choice(KILLS)
            kinds.append(kind)
            env = {EXIT_AT_ENV: kind} if kind != "sigkill" else {}
            driver = start_driver(Path(config), env=env)
            killer.driver = driver.pid
            processes = descendants(driver.pid)
            try:
                if kind == "sigkill":
                    before = _markers(table_dir)
                    wait_for("a new shard", lambda n=before: _markers(table_dir) > n, driver)
                    time.sleep(rng.uniform(0.0, 3.0))
                    processes |= descendants(driver.pid)
                    if driver.poll() is None:
                        os.kill(driver.pid, signal.SIGKILL)
                log = output(driver)
            finally:
                kill_all(driver, processes | descendants(driver.pid))
            assert driver.returncode in (-signal.SIGKILL, 0, 75, 1), log
            for _attempt in range(4):  # rerun until the night is done
                rerun = start_driver(Path(config))
                killer.driver = rerun.pid
                log = output(rerun)
                kill_all(rerun, {})
                reruns += 1
                if rerun.returncode == 0:
                    break
            assert rerun.returncode == 0, log
            rows = table_rows(fmt, root, config)
            ids = [r["id"] for r in rows]
            assert len(ids) == len(set(ids)), f"night {date}: an id twice"
            assert set(ids) == expected, f"night {date}: ids lost or foreign"
        actor_kills = killer.kills
    capsys.readouterr()
    assert main(["verify", config]) == 0, capsys.readouterr()
    before = commits(fmt, root, config)
    assert main(["run", config, "--no-progress"]) == 0  # nothing new: nothing committed
    assert commits(fmt, root, config) == before
    summary = {
        "format": fmt,
        "seed": SEED,
        "nights": len(NIGHTS),
        "first_driver_killed": kinds,
        "reruns": reruns,
        "actor_kills": actor_kills,
        "rows": len(expected),
        "rows_lost": 0,
        "rows_doubled": 0,
        "wall_seconds": round(time.monotonic() - started),
    }
    with capsys.disabled():
        print(f"\nfault suite: {json.dumps(summary)}")
