"""Fault injection for tests and game days: a worker exits hard, as if killed, on a named shard.

Kept apart from the actor (and torch) because the driver needs the variable names too: it
forwards them to every actor it starts.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

# The shard id on which the worker process exits.
FAULT_SHARD_ENV = "BATCHMT_FAULT_EXIT_ON_SHARD"
# Optional: a file recording the fault, so it strikes once (the retry then succeeds);
# without it the worker exits on every attempt.
FAULT_MARKER_ENV = "BATCHMT_FAULT_MARKER"


def maybe_inject_fault(shard_id: str) -> None:
    if os.environ.get(FAULT_SHARD_ENV) != shard_id:
        return
    marker_path = os.environ.get(FAULT_MARKER_ENV)
    if marker_path:
        marker = Path(marker_path)
        if marker.exists():
            return
        marker.write_text(f"pid {os.getpid()} exited on shard {shard_id}\n")
    log.warning("fault_injected", shard=shard_id, pid=os.getpid())
    # os._exit, not sys.exit: no cleanup and no exception for Ray to report, like a kill.
    os._exit(17)
