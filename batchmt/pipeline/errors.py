"""The one root of every error batchmt raises on purpose.

`except batchmt.BatchmtError` catches anything the project itself reports, whatever room
raised it; `UserError` is the part of that tree which means "this job cannot run as
configured" (bad config, bad input, an output that belongs to another job, a model that will
not load), and the command line maps it to exit 2. `JobFailed` means the job ran but did not
complete every shard (exit 1).

Each concrete error keeps the builtin base it had before this root existed (`SpecError` is
still a `ValueError`, `StorageError` an `OSError`), so callers that caught those keep working.
This module imports nothing: every room can derive from it without a cycle, and
`import batchmt; batchmt.JobFailed` stays free of Ray and torch.
"""

from __future__ import annotations

__all__ = ["BatchmtError", "JobFailed", "UserError"]


class BatchmtError(Exception):
    """Anything batchmt raises on purpose; the message says what went wrong and what to do."""


class UserError(BatchmtError):
    """The job cannot run as configured: fix the config, the input or the output (exit 2)."""


class JobFailed(BatchmtError, RuntimeError):
    """The job ran but could not complete every shard; the message names them (exit 1)."""
