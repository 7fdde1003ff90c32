"""`batchmt status` of a job that has not finished says whether a driver holds it: the
lease's run, host, pid and heartbeat (pipeline/outputs/lease.py)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from batchmt.jobs.cli import main
from batchmt.pipeline.outputs.lease import acquire, release
from batchmt.pipeline.storage.fs import open_fs


def test_status_names_the_running_driver_and_then_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    (out / "_completions").mkdir(parents=True)
    fs, root = open_fs(str(out))
    lease = acquire(fs, root, ttl_s=60)
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"driver:  running: run {lease.run_id}" in text and f"pid {os.getpid()}" in text
    assert re.search(r"last heartbeat \d+s ago", text)
    release(fs, root, lease)
    assert main(["status", str(out), "--json"]) == 0
    driver = json.loads(capsys.readouterr().out)["driver"]
    assert driver["alive"] is False and driver["released"] is True
    assert main(["status", str(out)]) == 0
    assert "driver:  none running" in capsys.readouterr().out
