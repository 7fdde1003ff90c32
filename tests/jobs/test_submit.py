from __future__ import annotations

import shlex

from batchmt.jobs.submission.submit import OVERRIDES_FILE, entrypoint


def test_entrypoint_is_batchmt_run_with_overrides_from_a_file_not_the_command_line() -> None:
    cmd = entrypoint("configs/x.yaml", with_overrides=True)
    assert shlex.split(cmd) == [
        "batchmt",
        "run",
        "configs/x.yaml",
        "--no-progress",
        "--set-file",
        OVERRIDES_FILE,
    ]
    assert shlex.split(entrypoint("configs/x.yaml", with_overrides=False))[-1] == "--no-progress"
