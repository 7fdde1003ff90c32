"""Helpers for tests that run `batchmt` as a separate driver process and look at its processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from batchmt.jobs import ray_watchdog

REPO = Path(__file__).resolve().parents[2]


def start_driver(
    config: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """`batchmt run CONFIG ARGS --no-progress` in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "batchmt.jobs.cli", "run", str(config), *args, "--no-progress"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


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
    out, err = proc.communicate(timeout=600)
    return f"{out}\n{err}"


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
