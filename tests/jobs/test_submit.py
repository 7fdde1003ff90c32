from __future__ import annotations

import shlex

from batchmt.jobs.submit import entrypoint


def test_entrypoint_is_the_same_batchmt_run_command_with_quoted_overrides() -> None:
    cmd = entrypoint("configs/x.yaml", ["input.path=s3://b/dt=2026-11-27/", "job_name=a b"])
    assert shlex.split(cmd) == [
        "batchmt",
        "run",
        "configs/x.yaml",
        "--no-progress",
        "--set",
        "input.path=s3://b/dt=2026-11-27/",
        "--set",
        "job_name=a b",
    ]
