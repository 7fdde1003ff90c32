"""Output partitions: which partition a shard's rows belong to, and its hive folder name.

The planner never lets a shard span two values of the output partition columns
(`Plan.output_partitions`), so a shard file belongs to exactly one partition: the values of
those columns in its slices.

A null partition value (a slice without the column: how the sources spell a hive
`__HIVE_DEFAULT_PARTITION__` folder or a Delta / Iceberg null) is the partition NULL_PARTITION:
its folder is `col=__HIVE_DEFAULT_PARTITION__` as Hive, Spark and pyarrow write and read it,
and table commits record it as null (`partition_value`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote, unquote

from batchmt.pipeline.errors import BatchmtError
from batchmt.pipeline.inputs.shards import Shard

# Characters hive leaves as they are in a partition folder name; anything else is %XX, as
# Hive, Spark and pyarrow (segment_encoding="uri") decode it.
_SAFE = "-_.~"
# A null partition value, as Hive and Spark name its folder (pyarrow reads it back as null).
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


def partition_value(value: str | None) -> str | None:
    """A partition value as a table records it: NULL_PARTITION is null."""
    return None if value is None or value == NULL_PARTITION else value


def partition_text(value: object) -> str:
    """A table's partition value as our partitions spell it: null is NULL_PARTITION."""
    return NULL_PARTITION if value is None else str(value)


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
    """The output partition of `shard`: its slices' values of `columns` ({} when none); a
    column a slice has no value for is null (NULL_PARTITION): the planner checked that
    output.partition_by names partition columns of the input, and leaves nulls out.

    Raises PartitionError when two slices disagree: the plan was not cut on these columns,
    and writing would mix partitions in one file.
    """
    if not columns:
        return {}
    values: dict[str, str] | None = None
    for piece in shard.slices:
        here = {c: piece.partition.get(c, NULL_PARTITION) for c in columns}
        if values is None:
            values = here
        elif here != values:
            raise PartitionError(
                f"shard {shard.shard_id} spans output partitions {hive_path(values)} and "
                f"{hive_path(here)}; plan again (the plan must be cut on output.partition_by)"
            )
    return values or {}
