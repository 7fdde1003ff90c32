"""`batchmt verify`: every input id is in the output exactly as often as in the input, and
every row that was not translated says why. Streaming: memory is bounded by one shard.

The frozen plan names each shard's input rows, so the check runs shard by shard: the ids of
one shard's input slices (the id column only) against the id column of its
`data/part-<shard>.parquet`. An id written by the wrong shard shows as missing in one and
unexpected in the other. Data files of shards the plan does not know are read whole as
unexpected rows, and input files that arrived after the plan was frozen are counted from
their footers (their rows are missing: a resume does not pick them up).

Every read goes through `with_retries`, as the job's own reads do. Ids in the report are
JSON scalars (pipeline.ids), so UUIDs, timestamps and decimals print and serialise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batchmt.pipeline import status as row_status
from batchmt.pipeline.columns import ERROR, STATUS
from batchmt.pipeline.ids import JsonScalar, id_keys, ids_to_json
from batchmt.pipeline.inputs.corpus import CorpusError, input_file_fs
from batchmt.pipeline.inputs.plan import list_input, plan_input
from batchmt.pipeline.inputs.shards import Plan, Shard
from batchmt.pipeline.outputs.id_buckets import IdSpill
from batchmt.pipeline.outputs.layout import OutputLayout, data_files_found, read_manifest
from batchmt.pipeline.outputs.records.markers import completed_shards
from batchmt.pipeline.outputs.runs import OutputView
from batchmt.pipeline.spec import InputSpec, ShardingSpec
from batchmt.pipeline.storage.fs import open_fs, open_input, with_retries

# Shards checked at once: reads are latency-bound on S3; memory is this many shards' ids.
_THREADS = 4
_EXPLAINED = frozenset({*row_status.TRANSLATED, row_status.EMPTY})


@dataclass
class VerifyReport:
    input_rows: int = 0
    output_rows: int = 0
    shards_checked: int = 0
    missing_count: int = 0  # input rows whose id the output lacks (or has too few times)
    duplicated_count: int = 0  # ids written more often than they occur in the input
    unexpected_count: int = 0  # output rows whose id is not in the input
    null_id_rows: tuple[int, int] = (0, 0)  # (input, output): null ids cannot be matched
    unexplained_rows: int = 0  # rows neither translated nor carrying an error
    unplanned_input_rows: int = 0  # rows of input files the frozen plan does not name
    unmarked_shards: list[str] = field(default_factory=list)  # data without a completion
    missing_ids: list[JsonScalar] = field(default_factory=list)  # the first few of each
    duplicated_ids: list[JsonScalar] = field(default_factory=list)
    unexpected_ids: list[JsonScalar] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.missing_count == 0
            and self.duplicated_count == 0
            and self.unexpected_count == 0
            and self.null_id_rows[0] == self.null_id_rows[1]
            and self.unexplained_rows == 0
            and self.unplanned_input_rows == 0
            and not self.unmarked_shards
        )

    def to_dict(self) -> dict[str, Any]:
        nulls = {"input": self.null_id_rows[0], "output": self.null_id_rows[1]}
        return {**asdict(self), "null_id_rows": nulls, "ok": self.ok}


@dataclass
class _ShardCheck:
    """One shard's counts and a few ids of each kind (JSON scalars)."""

    input_rows: int = 0
    output_rows: int = 0
    missing: int = 0
    duplicated: int = 0
    unexpected: int = 0
    null_in: int = 0
    null_out: int = 0
    unexplained: int = 0
    missing_ids: list[JsonScalar] = field(default_factory=list)
    duplicated_ids: list[JsonScalar] = field(default_factory=list)
    unexpected_ids: list[JsonScalar] = field(default_factory=list)


def _input_ids(shard: Shard, input_spec: InputSpec) -> pa.ChunkedArray:
    """The id column of exactly the shard's rows (nothing else is read)."""
    column = input_spec.id_column
    parts: list[pa.Array] = []
    for piece in shard.slices:
        if column in piece.partition:  # an id that is a partition folder
            parts.append(pa.array([piece.partition[column]] * piece.length, pa.string()))
            continue

        def read(path: str = piece.path, rg: int = piece.row_group) -> pa.ChunkedArray:
            fs, inner = input_file_fs(input_spec, path)
            with open_input(fs, inner) as f:
                parquet = pq.ParquetFile(f)
                if rg >= parquet.num_row_groups:
                    raise _changed(path, f"has {parquet.num_row_groups} row group(s)")
                return parquet.read_row_group(rg, columns=[column]).column(0)

        ids = with_retries(f"read ids of {piece.path}", read)
        if len(ids) < piece.offset + piece.length:
            raise _changed(piece.path, f"row group {piece.row_group} has {len(ids)} rows")
        parts.extend(ids.slice(piece.offset, piece.length).chunks)
    if not parts:
        return pa.chunked_array([], pa.null())
    parts = [p.dictionary_decode() if pa.types.is_dictionary(p.type) else p for p in parts]
    types = {p.type for p in parts}
    if len(types) > 1:  # files may differ (int32 / int64): compare as the widest
        target = pa.unify_schemas([pa.schema([("id", t)]) for t in types]).field("id").type
        parts = [p.cast(target) for p in parts]
    return pa.chunked_array(parts)


def _changed(path: str, now: str) -> CorpusError:
    """The input the job read is not there any more: nothing to compare the output with."""
    return CorpusError(
        f"input file {path} changed since the job planned it (it now {now}, fewer than the "
        "plan names); verify compares the output with the input the job read. Rerun the job "
        "with --set output.overwrite=true to translate the input as it is now"
    )


def _output_columns(fs: fsspec.AbstractFileSystem, path: str, id_column: str) -> pa.Table:
    def read() -> pa.Table:
        with open_input(fs, path) as f:
            parquet = pq.ParquetFile(f)
            names = [c for c in (id_column, STATUS, ERROR) if c in parquet.schema_arrow.names]
            return parquet.read(columns=names)

    return with_retries(f"read {path}", read)


def _unexplained(table: pa.Table) -> int:
    if STATUS not in table.column_names:
        return table.num_rows
    unexplained = pc.invert(
        pc.fill_null(pc.is_in(table.column(STATUS), pa.array(list(_EXPLAINED))), False)
    )
    if ERROR in table.column_names:
        unexplained = pc.and_(unexplained, pc.is_null(table.column(ERROR)))
    return int(pc.sum(unexplained).as_py() or 0)


def _first(keys: list[Any], ids: pa.ChunkedArray, wanted: set[Any], limit: int) -> list[JsonScalar]:
    """JSON spellings of up to `limit` of the wanted ids, in row order."""
    rows: list[int] = []
    seen: set[Any] = set()
    for row, key in enumerate(keys):
        if key in wanted and key not in seen:
            seen.add(key)
            rows.append(row)
            if len(rows) == limit:
                break
    return ids_to_json(ids.take(pa.array(rows, pa.int64()))) if rows else []


def _compare(
    in_ids: pa.ChunkedArray | None, out: pa.Table | None, id_column: str, sample: int
) -> _ShardCheck:
    check = _ShardCheck()
    in_keys = id_keys(in_ids) if in_ids is not None else []
    out_ids = out.column(id_column) if out is not None and id_column in out.column_names else None
    out_keys = id_keys(out_ids) if out_ids is not None else [None] * (out.num_rows if out else 0)
    check.input_rows, check.output_rows = len(in_keys), len(out_keys)
    check.unexplained = _unexplained(out) if out is not None else 0
    n_in = Counter(k for k in in_keys if k is not None)
    n_out = Counter(k for k in out_keys if k is not None)
    check.null_in, check.null_out = in_keys.count(None), out_keys.count(None)
    missing = {k for k, n in n_in.items() if n_out.get(k, 0) < n}
    duplicated = {k for k, n in n_out.items() if k in n_in and n > n_in[k]}
    unexpected = {k for k in n_out if k not in n_in}
    check.missing = sum(n_in[k] - n_out.get(k, 0) for k in missing)
    check.duplicated = len(duplicated)
    check.unexpected = sum(n_out[k] for k in unexpected)
    if in_ids is not None:
        check.missing_ids = _first(in_keys, in_ids, missing, sample)
    if out_ids is not None:
        check.duplicated_ids = _first(out_keys, out_ids, duplicated, sample)
        check.unexpected_ids = _first(out_keys, out_ids, unexpected, sample)
    return check


def _planned(layout: OutputLayout, input_spec: InputSpec) -> Plan:
    manifest = read_manifest(layout)
    if manifest is not None:
        return manifest[1]
    # Nothing was claimed yet: plan now, so every input row counts as missing.
    return plan_input(input_spec, ShardingSpec())


def _unplanned_rows(plan: Plan, input_spec: InputSpec) -> int:
    """Rows of input files that arrived after the plan was frozen (footers only). A table
    plan pins one version: later versions are another job's input, not missing rows."""
    if plan.source.get("format") in ("delta", "iceberg"):
        return 0
    fs, _ = open_fs(input_spec.path, input_spec.storage_options)
    planned = {piece.path for shard in plan.shards for piece in shard.slices}

    def footer_rows(path: str) -> int:
        with open_input(fs, path) as f:
            return int(pq.ParquetFile(f).metadata.num_rows)

    # The files input.filter keeps (none of a skipped partition is input to this job).
    new = [f.path for f in list_input(input_spec).files if f.path not in planned]
    rows = 0
    for path in new:
        rows += with_retries(f"read footer {path}", partial(footer_rows, path))
    return rows


def _shard_ids_of_data(layout: OutputLayout) -> dict[str, str]:
    """{shard id: data file} for every data file (what any Parquet reader sees)."""
    return data_files_found(layout)


def _checks(
    layout: OutputLayout, plan: Plan, input_spec: InputSpec, data: dict[str, str], sample: int
) -> Iterator[_ShardCheck]:
    planned = {s.shard_id for s in plan.shards}
    column = input_spec.id_column

    def check_shard(shard: Shard) -> _ShardCheck:
        out = (
            _output_columns(layout.fs, data[shard.shard_id], column)
            if shard.shard_id in data
            else None
        )
        return _compare(_input_ids(shard, input_spec), out, column, sample)

    def check_stray(shard_id: str) -> _ShardCheck:
        return _compare(None, _output_columns(layout.fs, data[shard_id], column), column, sample)

    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        yield from pool.map(check_shard, plan.shards)
        yield from pool.map(check_stray, sorted(set(data) - planned))


def verify_output(layout: OutputLayout, input_spec: InputSpec, sample: int = 20) -> VerifyReport:
    """Check the output against the input, shard by shard (see the module docstring)."""
    plan = _planned(layout, input_spec)
    data = _shard_ids_of_data(layout)
    marked = set(completed_shards(layout))
    report = VerifyReport()
    report.unmarked_shards = sorted(sid for sid in data if sid not in marked)[:sample]
    null_in = null_out = 0
    kinds = ("missing_ids", "duplicated_ids", "unexpected_ids")
    samples: dict[str, list[JsonScalar]] = {k: [] for k in kinds}
    for check in _checks(layout, plan, input_spec, data, sample):
        report.shards_checked += 1
        report.input_rows += check.input_rows
        report.output_rows += check.output_rows
        report.missing_count += check.missing
        report.duplicated_count += check.duplicated
        report.unexpected_count += check.unexpected
        report.unexplained_rows += check.unexplained
        null_in += check.null_in
        null_out += check.null_out
        for kind in kinds:
            found = samples[kind]
            if len(found) < sample:
                found.extend(getattr(check, kind)[: sample - len(found)])
    report.null_id_rows = (null_in, null_out)
    report.unplanned_input_rows = _unplanned_rows(plan, input_spec)
    report.input_rows += report.unplanned_input_rows
    report.missing_ids, report.duplicated_ids, report.unexpected_ids = (samples[k] for k in kinds)
    return report


def verify_runs(view: OutputView, input_spec: InputSpec, sample: int = 20) -> VerifyReport:
    """An output of input.since runs against the input as it is now: every input id once
    across the runs' completed files of a Parquet output (an older run's files lost the ids a
    later run translated again), or once among the live files of a Delta / Iceberg table (the
    files its log names now). Rows deleted from the input show as unexpected (not propagated).

    Streamed like verify_output: ids are read one input shard or one output file at a time
    and spilled to hash buckets on disk (pipeline/outputs/id_buckets.py), which are then
    counted one by one; memory is one shard's ids plus one bucket."""
    whole = input_spec.model_copy(update={"since": None})
    plan = plan_input(whole, ShardingSpec())
    column = input_spec.id_column
    # One id type for every side: files of several writers compare as text, and runs that
    # wrote the id as another type (string_view from a deltalake-rewritten input file) are
    # cast to the input's.
    target = _input_id_type(plan, whole)
    report = VerifyReport()
    nulls = [0, 0]
    with IdSpill(plan.num_rows) as spill:

        def add(side: int, ids: pa.ChunkedArray) -> None:
            ids = _as_type(ids, target)
            keys = id_keys(ids)
            spellings = ids_to_json(ids)
            kept = [i for i, k in enumerate(keys) if k is not None]
            nulls[side] += len(keys) - len(kept)
            spill.add(("in", "out")[side], [keys[i] for i in kept], [spellings[i] for i in kept])

        for shard in plan.shards:
            ids = _input_ids(shard, whole)
            report.input_rows += len(ids)
            add(0, ids)
        for fs, path in _published(view, report, sample):
            table = _output_columns(fs, path, column)
            report.shards_checked += 1
            report.output_rows += table.num_rows
            report.unexplained_rows += _unexplained(table)
            if column in table.column_names:
                add(1, table.column(column))
            else:
                nulls[1] += table.num_rows
        counts = spill.compare(sample)
    report.missing_count, report.duplicated_count = counts.missing, counts.duplicated
    report.unexpected_count = counts.unexpected
    report.null_id_rows = (nulls[0], nulls[1])
    report.missing_ids, report.duplicated_ids = counts.missing_ids, counts.duplicated_ids
    report.unexpected_ids = counts.unexpected_ids
    return report


def _published(
    view: OutputView, report: VerifyReport, sample: int
) -> Iterator[tuple[fsspec.AbstractFileSystem, str]]:
    """The data files a reader of the output reads, one at a time. Parquet runs: each run's
    completed shards (a data file without a marker is reported, not read). A table: the files
    its log holds now, whichever job wrote them."""
    if view.is_table:
        for published in view.published_files():
            yield view.fs, published.path
        return
    for run in view.runs:
        layout = run.layout
        data = data_files_found(layout)
        done = set(completed_shards(layout))
        report.unmarked_shards += sorted(sid for sid in data if sid not in done)[:sample]
        for sid in sorted(done & set(data)):
            yield layout.fs, data[sid]


def _input_id_type(plan: Plan, input_spec: InputSpec) -> pa.DataType:
    """The input's id type from its files' footers: text when files disagree."""
    column = input_spec.id_column
    types: set[pa.DataType] = set()
    paths = set()
    for shard in plan.shards:
        for piece in shard.slices:
            if column in piece.partition:
                types.add(pa.string())
            else:
                paths.add(piece.path)

    def read_type(path: str) -> pa.DataType:
        fs, inner = input_file_fs(input_spec, path)
        with open_input(fs, inner) as f:
            schema = pq.ParquetFile(f).schema_arrow
        kind = schema.field(column).type if column in schema.names else pa.null()
        return kind.value_type if pa.types.is_dictionary(kind) else kind

    for path in sorted(paths):
        types.add(with_retries(f"read footer {path}", partial(read_type, path)))
    types.discard(pa.null())
    return types.pop() if len(types) == 1 else pa.string()


def _as_type(ids: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    chunks = [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in ids.chunks]
    ids = pa.chunked_array(chunks, type=chunks[0].type) if chunks else pa.chunked_array([], target)
    if ids.type == target:
        return ids
    try:
        return ids.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise CorpusError(
            f"ids of type {ids.type} cannot be compared with the input's {target} ids ({exc})"
        ) from None
