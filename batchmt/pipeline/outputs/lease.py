"""One driver per output: a lease with a generation number that fences out a lost holder.

    <output>/_lease/<generation>.json   {run_id, host, pid, token, heartbeat_at, ttl_s, ...}

Taking the lease is an exclusive create of the *next* generation's file: on local disks a
hard link of a finished temp file (fails if the name exists), on S3 a PUT with
`If-None-Match: *` (s3fs `mode="create"`; AWS S3, moto and MinIO honour it). Whoever creates
generation N+1 holds the output; generation N's holder sees a higher number on its next
heartbeat or fence check and stops writing. Every create is read back and its random token
compared, so an endpoint that ignores `If-None-Match` still cannot give the lease to two
drivers for longer than one heartbeat (README: "One driver per output").

A lease is live while `heartbeat_at + ttl_s` is in the future and it is not released. A
driver on the same host whose process is gone loses its lease at once (a killed driver
need not make the rerun wait a TTL). Clocks of the hosts must agree to well within the TTL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import fsspec

from batchmt.pipeline.errors import BatchmtError, UserError
from batchmt.pipeline.storage.fs import create_exclusive as _create_exclusive
from batchmt.pipeline.storage.fs import (
    join,
    list_names,
    read_json,
    remove,
    write_json,
)

log = logging.getLogger(__name__)

LEASE_DIR = "_lease"
# Seconds without a heartbeat after which another driver may take the output over. Long
# enough for a GC pause or a slow S3 PUT; a test or a game day shortens it via the variable.
DEFAULT_TTL_S = 60.0
TTL_ENV = "BATCHMT_LEASE_TTL_S"
# The driver hands its generation to its actors under this name, so a replica of a driver
# that lost the lease never publishes a data file (see check_fence).
GENERATION_ENV = "BATCHMT_LEASE_GENERATION"
_KEEP_OLD = 2  # older generation files kept for the record; the rest are pruned


class LeaseHeldError(UserError, RuntimeError):
    """Another live driver holds the output: this one cannot start."""


class LeaseLostError(BatchmtError, RuntimeError):
    """This driver's lease was taken over (or expired): it must stop writing the output."""


@dataclass(frozen=True)
class LeaseRecord:
    generation: int
    run_id: str
    host: str
    pid: int
    token: str  # random per acquisition: tells a read-back whose create won
    acquired_at: float
    heartbeat_at: float
    ttl_s: float
    released: bool = False

    def live(self, now: float) -> bool:
        return not self.released and now < self.heartbeat_at + self.ttl_s

    def describe(self, now: float) -> str:
        return (
            f"run {self.run_id} (host {self.host}, pid {self.pid}, lease generation "
            f"{self.generation}, last heartbeat {max(0.0, now - self.heartbeat_at):.0f}s ago, "
            f"expires in {max(0.0, self.heartbeat_at + self.ttl_s - now):.0f}s)"
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LeaseRecord:
        return cls(
            generation=int(data["generation"]),
            run_id=str(data["run_id"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            token=str(data["token"]),
            acquired_at=float(data["acquired_at"]),
            heartbeat_at=float(data["heartbeat_at"]),
            ttl_s=float(data["ttl_s"]),
            released=bool(data.get("released", False)),
        )


def lease_ttl() -> float:
    value = os.environ.get(TTL_ENV)
    return float(value) if value else DEFAULT_TTL_S


def _lease_path(root: str, generation: int) -> str:
    return join(root, LEASE_DIR, f"{generation:010d}.json")


def _generations(fs: fsspec.AbstractFileSystem, root: str) -> list[int]:
    names = list_names(fs, join(root, LEASE_DIR))
    return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())


def _read(fs: fsspec.AbstractFileSystem, root: str, generation: int) -> LeaseRecord | None:
    try:
        data = read_json(fs, _lease_path(root, generation))
        return LeaseRecord.from_dict(data) if isinstance(data, dict) else None
    except (KeyError, TypeError, ValueError):
        return None  # half-written by a foreign tool: treat as not there, never as ours


def current_lease(fs: fsspec.AbstractFileSystem, root: str) -> LeaseRecord | None:
    """The highest generation's record, or None when the output was never leased."""
    generations = _generations(fs, root)
    if not generations:
        return None
    record = _read(fs, root, generations[-1])
    if record is None:  # unreadable: count it as an expired holder of that generation
        return LeaseRecord(generations[-1], "unknown", "unknown", 0, "", 0.0, 0.0, 0.0)
    return record


def _pid_gone_here(record: LeaseRecord) -> bool:
    """True when the holder ran on this host and its process no longer exists."""
    if record.host != socket.gethostname() or record.pid <= 0:
        return False
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's live process
    return False


def acquire(
    fs: fsspec.AbstractFileSystem,
    root: str,
    *,
    ttl_s: float | None = None,
    now: Callable[[], float] = time.time,
) -> LeaseRecord:
    """Take the output's lease, or raise LeaseHeldError naming the live holder."""
    ttl = lease_ttl() if ttl_s is None else ttl_s
    holder = current_lease(fs, root)
    if holder is not None and holder.live(now()) and not _pid_gone_here(holder):
        raise LeaseHeldError(
            f"output {root} is in use by {holder.describe(now())}; wait for it to finish, or "
            f"stop it (a dead driver's lease expires after {holder.ttl_s:.0f}s)"
        )
    generation = holder.generation + 1 if holder else 1
    stamp = now()
    record = LeaseRecord(
        generation=generation,
        run_id=f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(stamp))}-{uuid.uuid4().hex[:8]}",
        host=socket.gethostname(),
        pid=os.getpid(),
        token=uuid.uuid4().hex,
        acquired_at=stamp,
        heartbeat_at=stamp,
        ttl_s=ttl,
    )
    path = _lease_path(root, generation)
    try:
        _create_exclusive(fs, path, json.dumps(asdict(record), sort_keys=True).encode())
    except FileExistsError:
        pass  # a retried PUT may have been ours: the read-back decides
    stored = _read(fs, root, generation)
    if stored is None or stored.token != record.token:
        winner = stored.describe(now()) if stored else "another driver"
        raise LeaseHeldError(
            f"output {root} was just claimed by {winner}; this driver did not start"
        )
    if holder is not None and not holder.released:
        log.warning("lease taken over from %s", holder.describe(now()))
    for old in _generations(fs, root)[: -_KEEP_OLD - 1]:
        remove(fs, _lease_path(root, old))
    return record


def verify_held(fs: fsspec.AbstractFileSystem, root: str, record: LeaseRecord) -> None:
    """Raise LeaseLostError unless `record` is still the highest generation, with our token."""
    generations = _generations(fs, root)
    newest = generations[-1] if generations else 0
    mine = _read(fs, root, record.generation)
    if newest != record.generation or mine is None or mine.token != record.token:
        other = current_lease(fs, root)
        who = other.describe(time.time()) if other else "nobody (the lease was deleted)"
        raise LeaseLostError(
            f"lost the lease on {root} (generation {record.generation}, run {record.run_id}): "
            f"it is now held by {who}; this driver stops, its later work does not count"
        )


def check_fence(fs: fsspec.AbstractFileSystem, root: str, generation: int) -> None:
    """Raise LeaseLostError if a generation newer than `generation` holds the output.

    Workers call this before publishing: the window left is one listing plus one PUT.
    """
    generations = _generations(fs, root)
    if generations and generations[-1] > generation:
        raise LeaseLostError(
            f"output {root} was taken over (lease generation {generations[-1]} > "
            f"{generation}); this worker's driver lost it, so the shard is not published"
        )


def renew(fs: fsspec.AbstractFileSystem, root: str, record: LeaseRecord) -> LeaseRecord:
    """Check we still hold the lease, then push its heartbeat forward."""
    verify_held(fs, root, record)
    renewed = replace(record, heartbeat_at=time.time())
    write_json(fs, _lease_path(root, record.generation), asdict(renewed))
    return renewed


def release(fs: fsspec.AbstractFileSystem, root: str, record: LeaseRecord) -> None:
    """Mark our lease released (kept as a record) so the next driver starts at once."""
    try:
        verify_held(fs, root, record)
    except LeaseLostError:
        return  # not ours any more: leave the new holder's state alone
    write_json(fs, _lease_path(root, record.generation), asdict(replace(record, released=True)))


class Heartbeat:
    """Renews a lease every ttl/4 in a daemon thread; `lost` tells the driver to stop.

    A renewal that fails on storage is logged and retried on the next beat: only a newer
    generation (or our own file gone) counts as lost.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, record: LeaseRecord) -> None:
        self.fs, self.root, self.record = fs, root, record
        self.lost: LeaseLostError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batchmt-lease", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.lost is None:
            with contextlib.suppress(Exception):  # best effort: the TTL frees it anyway
                release(self.fs, self.root, self.record)

    def _run(self) -> None:
        while not self._stop.wait(self.record.ttl_s / 4):
            try:
                self.record = renew(self.fs, self.root, self.record)
            except LeaseLostError as exc:
                self.lost = exc
                log.error("%s", exc)
                return
            except Exception as exc:  # noqa: BLE001 - storage trouble: try again next beat
                log.warning("lease heartbeat on %s failed: %s", self.root, exc)

    def check(self) -> None:
        """Raise if the heartbeat saw the lease lost, else check storage now."""
        if self.lost is not None:
            raise self.lost
        try:
            verify_held(self.fs, self.root, self.record)
        except LeaseLostError as exc:
            self.lost = exc
            raise
