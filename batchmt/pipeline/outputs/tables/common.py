"""What a table commit is given and what it returns, whatever the table format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from batchmt.pipeline.errors import UserError

# Keys recorded with every commit (Delta commit info, Iceberg snapshot summary).
JOB_KEY = "batchmt.job"
RUN_KEY = "batchmt.run"
FINGERPRINT_KEY = "batchmt.fingerprint"
SOURCE_KEY = "batchmt.source"

LAKES_EXTRA = "pip install 'batchmt[lakes]'"

Mode = Literal["append", "overwrite_partitions", "overwrite"]


class TableCommitError(UserError, RuntimeError):
    """The table commit cannot be made as configured; the message names the key to change."""


@dataclass(frozen=True)
class TableFile:
    """One data file the job wrote into the table's location."""

    relpath: str  # under the table location, exactly as stored (hive-escaped folders)
    uri: str  # the full URL (what Iceberg records)
    size: int
    rows: int
    partition: Mapping[str, str]


@dataclass(frozen=True)
class CommitRequest:
    location: str  # the table's URL (output.path; a local path made absolute)
    files: list[TableFile]
    schema: pa.Schema  # of the rows, partition columns included
    partition_by: list[str]
    mode: Mode
    job_key: str
    # Recorded with the commit, next to JOB_KEY (run id, spec fingerprint, source read).
    properties: dict[str, str] = field(default_factory=dict)
    # input.since: older files (relpath under the location, as stored) that the commit
    # removes, each with its copy without the run's ids (pipeline/outputs/supersede.py), added.
    replaced: list[tuple[str, TableFile]] = field(default_factory=list)

    @property
    def covered(self) -> set[tuple[str, ...]]:
        """The partitions this job wrote (overwrite_partitions replaces exactly these)."""
        return {tuple(f.partition[c] for c in self.partition_by) for f in self.files}

    def recorded(self) -> dict[str, str]:
        return {**self.properties, JOB_KEY: self.job_key}


@dataclass(frozen=True)
class CommitResult:
    format: str
    version: int  # Delta table version / Iceberg snapshot id of the job's commit
    committed_now: bool  # False: an earlier run had made it (found by the job key)
    removed_files: int = 0
    added_files: int = 0
    rows_replaced: int = 0  # older rows whose id this commit's rows translate again

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "committed_version": self.version,
            "committed_now": self.committed_now,
            "added_files": self.added_files,
            "removed_files": self.removed_files,
            "rows_replaced": self.rows_replaced,
        }
