"""The output lease: one holder at a time, takeover only of a dead or expired holder, and a
holder that lost the lease finds out (on a local folder and on a real S3 endpoint)."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, replace

import pytest

from batchmt.pipeline.outputs.lease import (
    LeaseHeldError,
    LeaseLostError,
    LeaseRecord,
    acquire,
    check_fence,
    current_lease,
    release,
    renew,
    verify_held,
)
from batchmt.pipeline.storage.fs import join, open_fs, write_json
from tests.conftest import StorageRoot


def test_second_driver_is_refused_naming_the_holder(storage_root: StorageRoot) -> None:
    fs, path = open_fs(storage_root.url_of("out"), storage_root.storage_options)
    first = acquire(fs, path, ttl_s=60)
    with pytest.raises(LeaseHeldError) as refused:
        acquire(fs, path, ttl_s=60)
    message = str(refused.value)
    assert first.run_id in message and f"pid {first.pid}" in message
    verify_held(fs, path, first)  # the refusal changed nothing


def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced(
    storage_root: StorageRoot,
) -> None:
    fs, path = open_fs(storage_root.url_of("out"), storage_root.storage_options)
    clock = [1000.0]
    old = acquire(fs, path, ttl_s=10, now=lambda: clock[0])
    # A holder on another host (its pid cannot be checked) that stopped heartbeating.
    write_json(
        fs, join(path, "_lease", f"{old.generation:010d}.json"), asdict(replace(old, host="h2"))
    )
    clock[0] += 5
    with pytest.raises(LeaseHeldError):
        acquire(fs, path, ttl_s=10, now=lambda: clock[0])
    clock[0] += 6
    new = acquire(fs, path, ttl_s=10, now=lambda: clock[0])
    assert new.generation == old.generation + 1
    with pytest.raises(LeaseLostError, match=new.run_id):
        verify_held(fs, path, old)
    with pytest.raises(LeaseLostError):
        renew(fs, path, old)
    with pytest.raises(LeaseLostError):
        check_fence(fs, path, old.generation)
    check_fence(fs, path, new.generation)
    release(fs, path, old)  # a fenced holder's release leaves the new holder alone
    verify_held(fs, path, new)


def test_released_lease_and_dead_local_holder_are_taken_at_once(
    storage_root: StorageRoot,
) -> None:
    fs, path = open_fs(storage_root.url_of("out"), storage_root.storage_options)
    first = acquire(fs, path, ttl_s=600)
    release(fs, path, first)
    second = acquire(fs, path, ttl_s=600)
    # The same host, a process that no longer exists: its lease dies with it.
    dead = replace(second, pid=2**22 + 17)
    write_json(fs, join(path, "_lease", f"{second.generation:010d}.json"), asdict(dead))
    third = acquire(fs, path, ttl_s=600)
    assert third.generation == first.generation + 2
    current = current_lease(fs, path)
    assert current is not None and current.run_id == third.run_id


def test_racing_drivers_exactly_one_wins(storage_root: StorageRoot) -> None:
    fs, path = open_fs(storage_root.url_of("out"), storage_root.storage_options)
    winners: list[LeaseRecord] = []
    losers: list[str] = []
    start = threading.Barrier(6)

    def race() -> None:
        start.wait()
        try:
            winners.append(acquire(fs, path, ttl_s=60))
        except LeaseHeldError as exc:
            losers.append(str(exc))

    threads = [threading.Thread(target=race) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(losers) == 5
    data = json.loads(fs.cat_file(join(path, "_lease", "0000000001.json")))
    assert data["token"] == winners[0].token
