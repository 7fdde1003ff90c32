"""Format versions of the files a run writes (manifest, markers, quality, `_SUCCESS`).

A file states the version it was written in; one without (written before versions) is 0.
A reader takes every version up to the one it writes and refuses a newer one by name:
a newer batchmt may have changed what a field means, and guessing would misreport.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VERSION_KEY = "version"


def format_version(data: Mapping[str, Any], newest: int, what: str) -> int:
    """The version `data` was written in; ValueError when it is newer than `newest`."""
    value = data.get(VERSION_KEY, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} has version {value!r}, not a whole number")
    if value > newest:
        raise ValueError(
            f"{what} is format version {value}, newer than this batchmt reads ({newest}); "
            "upgrade batchmt to read it"
        )
    return value
