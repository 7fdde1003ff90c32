"""The replica's malloc settings (workers/process/allocator.py)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from batchmt.workers.process.allocator import keep_freed_memory

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc"
)

# In a fresh process: is a 20 MiB, then a 24 MiB malloc served by its own mmap (glibc's
# chunk header bit IS_MMAPPED), before and after the replica's settings?
_PROBE = """
import ctypes, json, sys
from batchmt.workers.process.allocator import keep_freed_memory
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def mmapped(size):
    p = libc.malloc(size)
    bit = ctypes.c_size_t.from_address(p - ctypes.sizeof(ctypes.c_size_t)).value & 2
    libc.free(p)
    return bool(bit)

before = mmapped(20 * 2**20)
done = keep_freed_memory() if sys.argv[1] == "tune" else "untouched"
# Larger than the block just freed: glibc's own adaptive threshold (raised to the size of
# a freed mapping) does not cover it; the replica's setting (32 MiB) does.
print(json.dumps({"before": before, "done": done, "after": mmapped(24 * 2**20)}))
"""


def _probe(mode: str, **env: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@glibc_only
def test_a_tuned_replica_serves_large_blocks_from_its_heap() -> None:
    tuned = _probe("tune")
    assert tuned == {"before": True, "done": "glibc tuned", "after": False}


@glibc_only
def test_large_blocks_are_their_own_mappings_without_the_tuning() -> None:
    # The control: glibc's default maps the 24 MiB block fresh.
    assert _probe("leave") == {"before": True, "done": "untouched", "after": True}


@glibc_only
def test_a_users_own_malloc_settings_win() -> None:
    kept = _probe("tune", MALLOC_TRIM_THRESHOLD_="131072")
    assert kept["done"] == "user's malloc settings kept"
    assert kept["after"] is True


@glibc_only
def test_a_preloaded_allocator_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert keep_freed_memory() == "preloaded allocator kept"


def test_other_platforms_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert keep_freed_memory() == "not glibc: left as is"
