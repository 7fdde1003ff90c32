"""batchmt: distributed batch translation jobs on Ray.

The Python API mirrors the command line::

    import batchmt

    outcome = batchmt.run("configs/demo.yaml")           # or a dict, or a JobSpec
    table = batchmt.read_output(outcome.output_path)     # a pyarrow Table
    ds = batchmt.read_output(outcome.output_path, as_ray_dataset=True)

The code lives in three rooms installed under this package: `batchmt.pipeline` (data
plane: spec, corpus, shards, commit, quality, glossary files), `batchmt.workers` (compute
in one Ray actor: engines, decoding, formats) and `batchmt.jobs` (driver and entry points).
Errors: every error batchmt raises on purpose is a `batchmt.BatchmtError`; a job that cannot
run as configured raises a `batchmt.UserError` (exit 2 on the command line), one that ran but
left shards incomplete `batchmt.JobFailed` (exit 1).
Importing `batchmt` is cheap: Ray and torch load only when a job runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Every batchmt event is a stdlib logging record from here on (pipeline/logs.py): a notebook
# or a host application decides where they go; nothing is printed to stdout.
from batchmt.pipeline import logs as _logs  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    "BatchmtError",
    "JobFailed",
    "JobOutcome",
    "JobSpec",
    "Plan",
    "SpecError",
    "UserError",
    "load_config",
    "plan",
    "read_output",
    "run",
]

if TYPE_CHECKING:
    from batchmt.api import load_config, plan, read_output, run
    from batchmt.jobs.driver import JobOutcome
    from batchmt.pipeline.errors import BatchmtError, JobFailed, UserError
    from batchmt.pipeline.inputs.shards import Plan
    from batchmt.pipeline.spec import JobSpec, SpecError

_LAZY = {
    "run": "batchmt.api",
    "plan": "batchmt.api",
    "read_output": "batchmt.api",
    "load_config": "batchmt.api",
    "JobSpec": "batchmt.pipeline.spec",
    "SpecError": "batchmt.pipeline.spec",
    "Plan": "batchmt.pipeline.inputs.shards",
    "JobOutcome": "batchmt.jobs.driver",
    # One root for every error batchmt raises on purpose; UserError is exit 2 on the CLI.
    "BatchmtError": "batchmt.pipeline.errors",
    "UserError": "batchmt.pipeline.errors",
    "JobFailed": "batchmt.pipeline.errors",
}


def __getattr__(name: str) -> Any:
    # Lazy: `import batchmt` must not pull Ray and torch into a notebook that only reads output.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'batchmt' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
