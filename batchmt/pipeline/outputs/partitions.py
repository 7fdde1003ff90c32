"""Output partitions: which partition a shard's rows belong to, and its hive folder name.

The planner never lets a shard span two values of the output partition columns
(`Plan.output_partitions`), so a shard file belongs to exactly one partition: the values of
those columns in its slices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote, unquote

from batchmt.pipeline.errors import BatchmtError
from batchmt.pipeline.inputs.shards import Shard

# Characters hive leaves as they are in a partition folder name; anything else is %XX, as
# Hive, Spark and pyarrow (segment_encoding="uri") decode it.
_SAFE = "-_.~"


class PartitionError(BatchmtError, ValueError):
    """A shard's rows do not sit in one output partition."""


def hive_segment(column: str, value: str) -> str:
    """`col=value` with both sides escaped like hive (a `/` or `=` in a value stays inside)."""
    return f"{quote(column, safe=_SAFE)}={quote(value, safe=_SAFE)}"


def hive_path(partition: Mapping[str, str]) -> str:
    """`a=1/b=x` for {a: 1, b: x}, in the given column order; "" for no partition."""
    return "/".join(hive_segment(k, v) for k, v in partition.items())


def parse_hive_path(path: str) -> dict[str, str]:
    """The partition of a relative path's `col=value` folders (the inverse of hive_path)."""
    out = {}
    for part in path.split("/")[:-1]:
        key, sep, value = part.partition("=")
        if sep:
            out[unquote(key)] = unquote(value)
    return out


def shard_partition(shard: Shard, columns: Sequence[str]) -> dict[str, str]:
    """The output partition of `shard`: its slices' values of `columns` ({} when none).

    Raises PartitionError when a slice lacks a column or two slices disagree: the plan was
    not cut on these columns, and writing would mix partitions in one file.
    """
    if not columns:
        return {}
    values: dict[str, str] | None = None
    for piece in shard.slices:
        missing = [c for c in columns if c not in piece.partition]
        if missing:
            raise PartitionError(
                f"shard {shard.shard_id}: rows of {piece.path} have no value for output "
                f"partition column(s) {', '.join(missing)}; set output.partition_by to "
                "partition columns of the input"
            )
        here = {c: piece.partition[c] for c in columns}
        if values is None:
            values = here
        elif here != values:
            raise PartitionError(
                f"shard {shard.shard_id} spans output partitions {hive_path(values)} and "
                f"{hive_path(here)}; plan again (the plan must be cut on output.partition_by)"
            )
    return values or {}
