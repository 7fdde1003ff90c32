"""One logging system: structlog events and the stdlib records of pipeline modules (the
lease, storage retries) come out of one handler in one format."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import structlog

from batchmt.pipeline.logs import configure_logging, replay
from batchmt.pipeline.outputs.lease import acquire
from batchmt.pipeline.storage.fs import join, open_fs, write_json


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("batchmt").setLevel(logging.NOTSET)


def take_over_a_lease(tmp_path: Path) -> None:
    """The lease module's own warning: a lease of a holder on another host, expired."""
    fs, path = open_fs(str(tmp_path / "out"))
    clock = [1000.0]
    old = acquire(fs, path, ttl_s=10, now=lambda: clock[0])
    write_json(
        fs, join(path, "_lease", f"{old.generation:010d}.json"), asdict(replace(old, host="h2"))
    )
    clock[0] += 20
    acquire(fs, path, ttl_s=10, now=lambda: clock[0])


def test_a_lease_warning_is_a_json_line_like_every_other_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json=True)
    structlog.get_logger("batchmt.jobs.driver").info("job_planned", rows=3)
    take_over_a_lease(tmp_path)
    replay({"event": "shard_translated", "level": "info", "timestamp": "t"}, worker=0)
    captured = capsys.readouterr()
    assert captured.out == ""  # events never reach stdout
    events = [json.loads(line) for line in captured.err.splitlines()]
    assert events[0]["event"] == "job_planned"
    lease = next(e for e in events if e["logger"] == "batchmt.pipeline.outputs.lease")
    assert lease["level"] == "warning" and "lease taken over from" in lease["event"]
    assert lease["timestamp"].endswith("Z") and "\x1b" not in captured.err
    assert events[-1] == {
        "event": "shard_translated",
        "level": "info",
        "timestamp": "t",
        "worker": 0,
        "logger": "batchmt.worker",
    }
    # The same keys on the structlog event and the stdlib one.
    assert {"event", "level", "timestamp", "logger"} <= set(events[0]) & set(lease)


def test_on_a_terminal_the_lease_warning_reads_like_the_driver_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json=False)
    structlog.get_logger("batchmt.jobs.driver").info("job_planned", rows=3)
    take_over_a_lease(tmp_path)
    lines = capsys.readouterr().err.splitlines()
    planned = next(line for line in lines if "job_planned" in line)
    taken = next(line for line in lines if "lease taken over" in line)
    # hh:mm:ss [level    ] event ...: the same columns for both.
    assert planned[8:21] == " [info     ] " and taken[8:21] == " [warning  ] "
    assert not any(line.lstrip().startswith("{") for line in lines)


def test_the_level_hides_info_from_both_kinds_of_logger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("ERROR", json=True)
    structlog.get_logger("batchmt.jobs.driver").info("job_planned", rows=3)
    structlog.get_logger("batchmt.jobs.driver").warning("worker_died")
    take_over_a_lease(tmp_path)
    replay({"event": "shard_translated", "level": "info", "timestamp": "t"})
    assert capsys.readouterr().err == ""


def test_without_configuration_events_are_stdlib_records_not_stdout(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Python API: batchmt's events go to the host's logging, never to stdout."""
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h is caplog.handler]
    with caplog.at_level(logging.INFO, logger="batchmt"):
        structlog.get_logger("batchmt.jobs.driver").info("job_planned", rows=3)
    assert capsys.readouterr().out == ""
    (record,) = [r for r in caplog.records if r.name == "batchmt.jobs.driver"]
    assert record.getMessage().startswith("job_planned") and "rows=3" in record.getMessage()
