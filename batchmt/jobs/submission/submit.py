"""`batchmt submit`: the same job through the Ray Jobs API of an existing cluster.

The entrypoint is the command a person would run (`batchmt run CONFIG`); the project
folder travels as the job's working_dir, so configs and bundled models resolve on the
cluster exactly as they do locally. Two things never travel in the open:

- secrets in the folder: only the files jobs/submission/upload.py selects are uploaded (.gitignore
  plus a built-in list of secret files), and the list is shown before anything is sent;
- `--set` values (an endpoint password, a token): they go in a file inside the uploaded
  folder (`--set-file`), never on the job's command line, which Ray shows in its
  dashboard, job list and logs, and they are never printed.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from batchmt.jobs.submission.head import head_client, head_errors
from batchmt.jobs.submission.upload import UploadError, select, stage

# Inside the staged working_dir; relative, as the entrypoint runs from there.
OVERRIDES_FILE = ".batchmt/submit-overrides.json"


def entrypoint(config: str, with_overrides: bool) -> str:
    parts = ["batchmt", "run", config, "--no-progress"]
    if with_overrides:
        parts += ["--set-file", OVERRIDES_FILE]
    return shlex.join(parts)


def _config_in(root: Path, config: str) -> Path:
    path = Path(config).resolve()
    try:
        path.relative_to(root)
    except ValueError:
        raise UploadError(
            f"config {config} is outside the working folder {root}, which is what is "
            "uploaded; run submit from the project folder that holds the config"
        ) from None
    return path


def write_overrides(folder: Path, overrides: list[str]) -> None:
    """The overrides as `--set-file` reads them, readable by the owner only."""
    path = folder / OVERRIDES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(list(overrides), f)


def submit(
    config: str,
    overrides: list[str],
    address: str,
    *,
    wait: bool = True,
    client: Any = None,
) -> int:
    """Upload the selected files and start the job; follow its logs unless `wait` is off.

    `client`: a JobSubmissionClient (tests pass their own), else one for `address`.
    """
    root = Path.cwd().resolve()
    config_path = _config_in(root, config)
    selection = select(root, always=[config_path])
    print(selection.describe())
    if client is None:
        client = head_client(address)
    relative_config = config_path.relative_to(root).as_posix()
    with tempfile.TemporaryDirectory(prefix="batchmt-submit-") as staging:
        stage(selection, Path(staging))
        if overrides:
            write_overrides(Path(staging), overrides)
        with head_errors(address):
            job_id = _submit_with_retries(
                client,
                entrypoint=entrypoint(relative_config, bool(overrides)),
                runtime_env={"working_dir": staging},
                metadata={"tool": "batchmt", "config": relative_config},
            )
    passed = f"; {len(overrides)} --set value(s) passed in a file, not shown" if overrides else ""
    print(f"submitted {job_id} to {address}{passed}")
    if not wait:
        print(f"follow it with: ray job logs --address {address} --follow {job_id}")
        return 0
    return _follow(client, job_id)


# A head that has just started answers 500 "No available agent to submit job, please try
# again later" until its job agent registers: retried a bounded number of times.
_NOT_READY = "try again later"
SUBMIT_ATTEMPTS = 10  # waits 2, 4, ... 18 s: 90 s in all


def _submit_with_retries(client: Any, **job: Any) -> str:
    for attempt in range(SUBMIT_ATTEMPTS):
        try:
            return str(client.submit_job(**job))
        except Exception as exc:
            if _NOT_READY not in str(exc) or attempt == SUBMIT_ATTEMPTS - 1:
                raise
            time.sleep(2.0 * (attempt + 1))
    raise AssertionError("unreachable")


def _follow(client: Any, job_id: str) -> int:
    import asyncio

    from ray.job_submission import JobStatus

    async def follow() -> None:
        async for lines in client.tail_job_logs(job_id):
            sys.stdout.write(lines)

    asyncio.run(follow())
    status = client.get_job_status(job_id)
    print(f"job {job_id}: {status}")
    return 0 if status == JobStatus.SUCCEEDED else 1
