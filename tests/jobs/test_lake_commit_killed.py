"""The driver dies right before or right after its table commit (every shard done): the rerun
commits exactly once, and the table holds every id exactly once.

The first driver runs as its own process with BATCHMT_DRIVER_EXIT_AT (jobs/driver.py), which
makes it exit on the spot, without cleanup, at that point, as a SIGKILL there would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchmt.jobs.cli import main
from batchmt.jobs.driver import EXIT_AT_ENV
from tests.conftest import StorageRoot
from tests.jobs.drivers import descendants, kill_all, output, start_driver
from tests.jobs.test_lake_output_job import (
    DATES,
    commits,
    iceberg_table,
    lake_config,
    table_rows,
    write_days,
)

pytestmark = pytest.mark.usefixtures("ray_local")
pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg")
from pyiceberg.exceptions import NoSuchTableError  # noqa: E402


@pytest.mark.parametrize("point", ["before_table_commit", "after_table_commit"])
@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_driver_killed_around_the_commit_reruns_into_one_commit(
    fmt: str, point: str, tiny_marian: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = StorageRoot("local", str(tmp_path / "root"))
    ids = write_days(root, "in", DATES)
    config = lake_config(root, tiny_marian, tmp_path, "in", "job", format=fmt)

    driver = start_driver(Path(config), env={EXIT_AT_ENV: point})
    processes = descendants(driver.pid)
    try:
        log = output(driver)
    finally:
        kill_all(driver, processes | descendants(driver.pid))
    assert driver.returncode == 75, log
    jobs = list((Path(root.url_of("table")) / "_batchmt").iterdir())
    assert len(jobs) == 1
    job = jobs[0]
    assert not (job / "_SUCCESS").exists()
    manifest = json.loads((job / "_manifest.json").read_text())
    assert len(list((job / "_completions").iterdir())) == len(manifest["plan"]["shards"])
    if point == "after_table_commit":
        assert commits(fmt, root, config) == [job.name]
    elif fmt == "delta":  # the first commit creates the table: there is none yet
        assert not (Path(root.url_of("table")) / "_delta_log").exists()
    else:
        with pytest.raises(NoSuchTableError):
            iceberg_table(config)

    assert main(["run", config, "--no-progress"]) == 0
    assert "already complete" in capsys.readouterr().out  # no shard was redone
    assert commits(fmt, root, config) == [job.name]
    rows = table_rows(fmt, root, config)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    success = json.loads((job / "_SUCCESS").read_text())
    assert success["table"]["committed_now"] is (point == "before_table_commit")
