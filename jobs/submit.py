"""`batchmt submit`: the same job through the Ray Jobs API of an existing cluster.

The entrypoint is the very command a person would run (`batchmt run CONFIG --set ...`);
the project folder travels as the job's working_dir, so configs and bundled models
resolve on the cluster exactly as they do locally.
"""

from __future__ import annotations

import shlex
import sys

# Never upload these with the working dir: environments, outputs and caches are large
# and machine-specific.
_EXCLUDES = [
    ".venv",
    "out",
    ".git",
    "**/__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
]


def entrypoint(config: str, overrides: list[str]) -> str:
    parts = ["batchmt", "run", config, "--no-progress"]
    for item in overrides:
        parts += ["--set", item]
    return shlex.join(parts)


def submit(config: str, overrides: list[str], address: str, *, wait: bool = True) -> int:
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    job_id = client.submit_job(
        entrypoint=entrypoint(config, overrides),
        runtime_env={"working_dir": ".", "excludes": _EXCLUDES},
        metadata={"tool": "batchmt", "config": config},
    )
    print(f"submitted {job_id} to {address}")
    if not wait:
        print(f"follow it with: ray job logs --address {address} --follow {job_id}")
        return 0
    import asyncio

    async def follow() -> None:
        async for lines in client.tail_job_logs(job_id):
            sys.stdout.write(lines)

    asyncio.run(follow())
    status = client.get_job_status(job_id)
    print(f"job {job_id}: {status}")
    return 0 if status == JobStatus.SUCCEEDED else 1
