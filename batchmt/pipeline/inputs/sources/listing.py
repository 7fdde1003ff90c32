"""What every input source returns: the data files to plan, with their partition values,
and how they were chosen (format, pinned version, filter), for the plan and `batchmt plan`."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from batchmt.pipeline.inputs.partition_filter import FilterError, parse_filter

LAKES_EXTRA = "pip install 'batchmt[lakes]'"
_SHOWN = 5


@dataclass(frozen=True)
class InputFile:
    """One Parquet data file: its path as readers open it (corpus.input_file_fs) and its
    partition values as text (a null value is left out, as hive partitions have it)."""

    path: str
    partition: dict[str, str] = field(default_factory=dict)
    # Rows in the file when the table's metadata says (Delta add stats, Iceberg record
    # counts) without opening it; None for Parquet folders. Only reported (increments).
    rows: int | None = None


@dataclass(frozen=True)
class Listing:
    """The files of an input, in plan order, and where they came from.

    `source` lands in the Plan as it is: format, version (Delta version / Iceberg snapshot
    id, None for Parquet), filter, and how many files and partitions the filter kept.
    """

    files: list[InputFile]
    partition_columns: list[str]
    source: dict[str, Any]


def apply_filter(listing: Listing, text: str | None, where: str) -> Listing:
    """Keep the files whose partition values pass `input.filter` (none is opened)."""
    files = listing.files
    partitions = {_key(f.partition) for f in files}
    counts = {
        "files": len(files),
        "files_skipped": 0,
        "partitions": len(partitions),
        "partitions_skipped": 0,
    }
    if text is None:
        return replace(listing, source={**listing.source, "filter": None, **counts})
    test = parse_filter(text)
    unknown = [c for c in test.columns if c not in listing.partition_columns]
    if unknown:
        have = ", ".join(listing.partition_columns) or "none: it is not partitioned"
        raise FilterError(
            f"input.filter names {', '.join(unknown)}, not a partition column of {where} "
            f"(partition columns: {have}); a filter selects partitions, so name only those"
        )
    kept = [f for f in files if test.matches(f.partition)]
    if not kept:
        shown = sorted(partitions)[:_SHOWN]
        seen = "; ".join(", ".join(f"{k}={v}" for k, v in p) or "(no values)" for p in shown)
        raise FilterError(
            f"input.filter {text!r} matches none of the {len(partitions)} partition(s) of "
            f"{where} (e.g. {seen}); change input.filter"
        )
    kept_partitions = {_key(f.partition) for f in kept}
    source = {
        **listing.source,
        "filter": text,
        "files": len(kept),
        "files_skipped": len(files) - len(kept),
        "partitions": len(kept_partitions),
        "partitions_skipped": len(partitions) - len(kept_partitions),
    }
    return Listing(kept, listing.partition_columns, source)


def _key(partition: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(partition.items()))


def ordered(files: list[InputFile], partition_columns: list[str]) -> list[InputFile]:
    """Lake files grouped by partition, then by path: a table's log lists them in no
    particular order, and shards never span two partitions, so grouping keeps shards full."""

    def key(f: InputFile) -> tuple[tuple[tuple[int, str], ...], str]:
        values = tuple(
            (0, f.partition[c]) if c in f.partition else (1, "") for c in partition_columns
        )
        return values, f.path

    return sorted(files, key=key)


def modified_at(info: Mapping[str, Any]) -> float | None:
    """When a file (or a Delta commit) was last written, in POSIX seconds, from what
    `fs.info()` / a detailed listing says: local `mtime`, S3 `LastModified`, GCS `updated`."""
    for key in ("mtime", "LastModified", "last_modified", "updated"):
        value = info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
        if isinstance(value, datetime.datetime):
            if value.tzinfo is None:  # object stores report UTC
                value = value.replace(tzinfo=datetime.timezone.utc)
            return value.timestamp()
    return None
