"""Kill a driver's own local Ray when the driver dies without cleanup (SIGKILL, OOM killer).

Ray starts gcs_server and the raylet with PR_SET_PDEATHSIG, so those die with the driver,
but the agents the raylet starts (ray::DashboardAgent, ray::RuntimeEnvAgent) are reparented
to init and live on: measured with Ray 2.60, both were still running a minute after the
driver was SIGKILLed. This watchdog is a separate process in its own session (a kill of the
driver's process group does not reach it), started right after `ray.init`: the driver's
children at that moment are Ray's, and while the driver lives it notes them and everything
they start (later subprocesses of the driver itself are left alone). When the pipe from the
driver closes (the driver is gone, by any exit) it SIGKILLs the noted processes that still
run. Linux only (/proc); elsewhere the driver does not start it.

    python -m batchmt.jobs.ray.watchdog DRIVER_PID   (stdin: a pipe the driver holds open)
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

_SCAN_SECONDS = 1.0  # a process the raylet starts <1 s before the driver dies may be missed
_PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time in clock ticks) of `pid`, or None when it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[19]


def descendants(roots: list[int]) -> dict[int, str]:
    """{pid: start time} of every live descendant of `roots`."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry.name))
                starts[int(entry.name)] = stat[1]
    found: dict[int, str] = {}
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found and child in starts:
                found[child] = starts[child]
                stack.append(child)
    return found


def _is_child(pid: int, parent: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] == parent


def start_time(pid: int) -> str | None:
    stat = _stat(pid)
    return stat[1] if stat else None


def watch(driver_pid: int) -> None:
    me = os.getpid()
    ray_processes = [p for p in descendants([driver_pid]) if p != me and _is_child(p, driver_pid)]
    known: dict[int, str] = {}
    while True:
        known.update(descendants(ray_processes))
        known.update({p: s for p in ray_processes if (s := start_time(p)) is not None})
        readable, _, _ = select.select([sys.stdin], [], [], _SCAN_SECONDS)
        if readable and not os.read(sys.stdin.fileno(), 1024):
            break  # EOF: the driver is gone
    for pid, start in known.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == start:  # the same process, not a reused pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start_watchdog() -> subprocess.Popen[bytes] | None:
    """Start the watchdog for this process; keep the returned handle for the process's life
    (its stdin pipe is the driver's heartbeat). None where /proc does not exist."""
    if not (_PROC / str(os.getpid()) / "stat").exists():
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "batchmt.jobs.ray.watchdog", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]))
