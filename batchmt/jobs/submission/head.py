"""Talking to the Ray head for `batchmt submit`: a head that cannot be reached, or that asks
for a token the client lacks, is one line with the fix (exit 2), not Ray's 25-line
traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from batchmt.jobs.submission.upload import UploadError


class HeadError(UploadError):
    """The job could not be handed to the head (an UploadError: nothing ran, exit 2)."""


def _first_line(exc: BaseException | str) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@contextmanager
def head_errors(address: str) -> Iterator[None]:
    """Turn the Jobs API's connection and authentication errors into a HeadError."""
    from ray.exceptions import AuthenticationError, RayError

    try:
        yield
    except AuthenticationError as exc:
        raise HeadError(
            f"the Ray head at {address} refused the request ({_first_line(exc.message)}): it "
            "uses token authentication; set RAY_AUTH_MODE=token and the cluster's token "
            "(RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH / ~/.ray/auth_token) and submit again"
        ) from None
    except (ConnectionError, RuntimeError, ValueError, RayError) as exc:
        raise HeadError(
            f"cannot submit to the Ray head at {address}: {_first_line(exc)}; check --address "
            "(the dashboard, e.g. http://head:8265) and that the head is up"
        ) from None


def head_client(address: str) -> Any:
    """A JobSubmissionClient for `address` (it checks the connection when made)."""
    from ray.job_submission import JobSubmissionClient

    with head_errors(address):
        return JobSubmissionClient(address)
