"""Helpers for tests that run `batchmt` as a separate driver process and look at its processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from batchmt.jobs.ray import watchdog as ray_watchdog

REPO = Path(__file__).resolve().parents[2]
# The log file of each driver started here: a pipe nobody reads while the job runs would fill
# up and block the driver once it has logged 64 KiB.
_LOGS: dict[int, tempfile._TemporaryFileWrapper[str]] = {}


def start_driver(
    config: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """`batchmt run CONFIG ARGS --no-progress` in its own process group; `output(proc)`
    waits for it and returns what it printed (stdout and stderr)."""
    # Closed by output(), which outlives this function: no context manager here.
    log = tempfile.NamedTemporaryFile("w+", prefix="batchmt-driver-", suffix=".log")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchmt.jobs.cli", "run", str(config), *args, "--no-progress"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    _LOGS[proc.pid] = log
    return proc


def wait_for(what: str, condition: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    """Poll `condition` until true; fail with the driver's output if it exits first."""
    deadline = time.monotonic() + 300
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"driver exited ({proc.returncode}) before {what}: {output(proc)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def output(proc: subprocess.Popen[str]) -> str:
    proc.wait(timeout=600)
    log = _LOGS.pop(proc.pid)
    log.seek(0)
    text = log.read()
    log.close()
    return text


def descendants(pid: int) -> dict[int, str]:
    """{pid: start time} of the live descendants of `pid` (Linux /proc)."""
    return ray_watchdog.descendants([pid])


def alive(processes: Mapping[int, str]) -> list[int]:
    """Which of the recorded processes still run (the same processes, not reused pids)."""
    return [pid for pid, start in processes.items() if ray_watchdog.start_time(pid) == start]


def kill_all(proc: subprocess.Popen[str], processes: Mapping[int, str]) -> None:
    """Clean up after a test: the driver's group and any recorded process left."""
    for pid in [proc.pid, *alive(processes)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
