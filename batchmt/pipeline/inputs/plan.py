"""From `input` to a shard plan, for every input format: which files (Parquet listing, or
the live files of one Delta version / Iceberg snapshot), which of them `input.filter`
keeps (no data file opened), with `input.since` only the new ones
(pipeline/inputs/sources/increments.py), and shards that never span two output partitions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa

from batchmt.pipeline.inputs.corpus import CorpusError, check_schema, detect_format, input_file_fs
from batchmt.pipeline.inputs.shards import Plan, plan_shards, schema_to_text
from batchmt.pipeline.inputs.sources.hive import list_parquet
from batchmt.pipeline.inputs.sources.increments import (
    SINCE,
    PreviousState,
    explicit_state,
    select_new,
    since_mode,
)
from batchmt.pipeline.inputs.sources.listing import Listing, apply_filter
from batchmt.pipeline.spec import InputSpec, ShardingSpec
from batchmt.pipeline.storage.fs import open_input, with_retries


def describe_input(input_spec: InputSpec) -> str:
    """How error messages name the input: its table identifier or its path."""
    return input_spec.table or input_spec.path


def list_input(input_spec: InputSpec, version: int | None = None) -> Listing:
    """The files a job reads, filtered; `version` (a resume's pinned Delta version or
    Iceberg snapshot) overrides input.version."""
    kind = detect_format(input_spec)
    pinned = version if version is not None else input_spec.version
    where = describe_input(input_spec)
    if kind == "delta":
        from batchmt.pipeline.inputs.sources.delta import list_delta

        listing = list_delta(input_spec, pinned)
    elif kind == "iceberg":
        from batchmt.pipeline.inputs.sources.iceberg import list_iceberg

        listing = list_iceberg(input_spec, pinned)
    else:
        if input_spec.version is not None:
            raise CorpusError(
                f"input.version names a Delta version or Iceberg snapshot, but {where} is "
                "Parquet files; remove input.version (or set input.format)"
            )
        listing = list_parquet(input_spec)
    if not listing.files:
        raise CorpusError(
            f"{kind} table {where} version {listing.source.get('version')} has no data files; "
            "point input at a table with rows (or set input.version)"
        )
    return apply_filter(listing, input_spec.filter, where)


def output_partitions(
    listing: Listing, partition_by: Sequence[str] | None, input_spec: InputSpec
) -> list[str]:
    """The columns no shard may span: output.partition_by, else the input's partitions."""
    if partition_by is None:
        return list(listing.partition_columns)
    unknown = [c for c in partition_by if c not in listing.partition_columns]
    if unknown:
        have = ", ".join(listing.partition_columns) or "none: it is not partitioned"
        raise CorpusError(
            f"output.partition_by names {', '.join(unknown)}, not a partition column of input "
            f"{describe_input(input_spec)} (partition columns: {have}); set "
            "output.partition_by to some of those, or remove it"
        )
    return list(partition_by)


def plan_input(
    input_spec: InputSpec,
    sharding: ShardingSpec,
    partition_by: Sequence[str] | None = None,
    version: int | None = None,
    previous: PreviousState | None = None,
) -> Plan:
    """The shard plan of the input (see the module docstring).

    With `input.since: last`, `previous` is the state the last successful run covered
    (pipeline/outputs/runs.py; None: there is none, every file is new); an explicit since names
    its own. An increment without new files is a plan of zero shards, not an error.
    """
    listing = list_input(input_spec, version)
    split_on = output_partitions(listing, partition_by, input_spec)
    since = input_spec.since
    if since is None:
        return plan_shards(listing, input_spec, sharding, split_on)
    kind = str(listing.source.get("format") or "parquet")
    if since != "last":
        previous = explicit_state(input_spec, kind, since)
    new = select_new(input_spec, listing, previous, since_mode(since))
    if new.files:
        plan = plan_shards(new, input_spec, sharding, split_on)
    else:
        plan = _empty_plan(input_spec, listing, new, split_on)
    record = {**plan.source[SINCE], "rows_new": plan.num_rows}
    return replace(plan, source={**plan.source, SINCE: record})


def _empty_plan(
    input_spec: InputSpec, listing: Listing, increment: Listing, split_on: Sequence[str]
) -> Plan:
    """Nothing new: no shards, but the input's columns (one footer) are checked as always."""
    schema = _listing_schema(input_spec, listing)
    check_schema(schema, input_spec)
    text = schema_to_text(schema)
    source = increment.source
    content: list[Any] = [input_spec.path, text, [], source.get("format"), source.get("version")]
    body = json.dumps(content, sort_keys=True, default=str)
    return Plan(
        shards=[],
        num_rows=0,
        columns=list(schema.names),
        fingerprint=hashlib.sha256(body.encode()).hexdigest()[:16],
        input_path=input_spec.path or input_spec.table or "",
        schema=text,
        source=dict(source),
        partition_columns=list(listing.partition_columns),
        output_partitions=list(split_on),
    )


def input_schema(input_spec: InputSpec) -> pa.Schema:
    """The first planned file's columns, with the partition columns: enough to tell
    whether a column exists before a job plans (`batchmt score`)."""
    return _listing_schema(input_spec, list_input(input_spec))


def _listing_schema(input_spec: InputSpec, listing: Listing) -> pa.Schema:
    fs, path = input_file_fs(input_spec, listing.files[0].path)

    def read() -> pa.Schema:
        import pyarrow.parquet as pq

        with open_input(fs, path) as f:
            return pq.ParquetFile(f).schema_arrow

    schema = with_retries(f"read footer {path}", read)
    for name in listing.partition_columns:
        if name not in schema.names:
            schema = schema.append(pa.field(name, pa.string()))
    return schema
