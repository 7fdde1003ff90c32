"""input.since: only the files new since an earlier state of the input, for Delta (versions),
Iceberg (snapshots) and Parquet folders (file identities). Real deltalake, pyiceberg (SQL
catalog on SQLite) and local folders; nothing mocked."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchmt.pipeline.inputs.corpus import CorpusError
from batchmt.pipeline.inputs.plan import plan_input
from batchmt.pipeline.inputs.reader import read_shard
from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.inputs.sources.increments import (
    PreviousState,
    decode_seen,
    digests_of_inputs,
    encode_seen,
    increment_key,
    readable_source,
)
from batchmt.pipeline.spec import CatalogSpec, InputSpec, ShardingSpec
from tests.conftest import StorageRoot

deltalake = pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg.catalog.sql")

SHARDING = ShardingSpec(rows_per_shard=4)
UTC = datetime.timezone.utc


def rows(n: int, start: int = 0, lang: str | None = None) -> pa.Table:
    ids = [f"r{i:03d}" for i in range(start, start + n)]
    langs = [lang or ("de", "fr")[i % 2] for i in range(start, start + n)]
    return pa.table({"id": ids, "text": [f"text {i}" for i in ids], "lang": langs})


def ids_of(plan: Plan, spec: InputSpec) -> list[str]:
    if not plan.shards:
        return []
    table = pa.concat_tables([read_shard(shard, spec) for shard in plan.shards])
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == plan.num_rows
    return sorted(ids)


def plan(spec: InputSpec, previous: PreviousState | None = None, **kw: Any) -> Plan:
    return plan_input(spec, SHARDING, previous=previous, **kw)


def set_commit_time(table: Path, version: int, when: datetime.datetime) -> None:
    """Delta resolves a time to a version by its commit files' modification times."""
    commit = table / "_delta_log" / f"{version:020d}.json"
    os.utime(commit, (when.timestamp(), when.timestamp()))


# ------------------------------------------------------------------------------------------
# Delta


def test_delta_grows_by_one_partition(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(6), partition_by=["lang"])  # v0: de, fr
    deltalake.write_deltalake(path, rows(3, 100, "it"), mode="append", partition_by=["lang"])
    spec = InputSpec(path=path, since="last")

    grown = plan(spec, PreviousState(version=0, summary={"version": 0}))
    assert ids_of(grown, spec) == ["r100", "r101", "r102"]
    since = grown.source["since"]
    assert since["mode"] == "last" and since["from"] == {"version": 0} and since["to"] == 1
    assert (since["files_new"], since["files_already_seen"]) == (1, 2)
    assert (since["rows_new"], since["rows_already_seen"]) == (3, 6)
    assert grown.source["version"] == 1 and grown.partition_columns == ["lang"]
    assert "seen" not in since  # tables need no seen-set: the version is the state

    # No earlier run: everything is new, and the plan says so.
    first = plan(spec, None)
    assert first.num_rows == 9 and first.source["since"]["from"] is None
    assert first.source["since"]["files_already_seen"] == 0
    # The plan survives the manifest round trip with its increment.
    assert Plan.from_json(grown.to_json()).source == grown.source


def test_delta_rewritten_file_is_new_so_updated_rows_are_retranslated(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(6), partition_by=["lang"])  # v0
    deltalake.DeltaTable(path).update({"text": "'text r002 v2'"}, predicate="id = 'r002'")  # v1
    spec = InputSpec(path=path, since=0)
    updated = plan(spec)
    # The update rewrote lang=de's file: all its rows come again, the new text among them.
    assert ids_of(updated, spec) == ["r000", "r002", "r004"]
    texts = pa.concat_tables(read_shard(s, spec) for s in updated.shards).column("text")
    assert "text r002 v2" in texts.to_pylist()
    assert updated.source["since"]["files_already_seen"] == 1  # lang=fr untouched


def test_delta_explicit_version_and_timestamp(tmp_path: Path) -> None:
    table = tmp_path / "t"
    path = str(table)
    deltalake.write_deltalake(path, rows(2))  # v0
    deltalake.write_deltalake(path, rows(2, 10), mode="append")  # v1
    deltalake.write_deltalake(path, rows(2, 20), mode="append")  # v2
    base = datetime.datetime(2026, 11, 1, tzinfo=UTC)
    for version in range(3):
        set_commit_time(table, version, base + datetime.timedelta(days=version))

    since_v0 = InputSpec(path=path, since=0)
    assert ids_of(plan(since_v0), since_v0) == ["r010", "r011", "r020", "r021"]
    # Pinned to v1 (a resume's version, or input.version): only up to there.
    assert ids_of(plan(since_v0, version=1), since_v0) == ["r010", "r011"]

    at = InputSpec(path=path, since="2026-11-02T12:00:00+00:00")  # v1 was current
    timed = plan(at)
    assert ids_of(timed, at) == ["r020", "r021"]
    assert timed.source["since"]["from"] == {"timestamp": "2026-11-02T12:00:00+00:00", "version": 1}
    naive = InputSpec(path=path, since="2026-11-02T12:00:00")  # no zone: UTC
    assert plan(naive).source["since"]["from"]["version"] == 1

    before = InputSpec(path=path, since="2020-01-01T00:00:00+00:00")  # before the table
    assert plan(before).num_rows == 6 and plan(before).source["since"]["from"]["version"] is None

    with pytest.raises(CorpusError, match=r"version 5 is after version 2"):
        plan(InputSpec(path=path, since=5))


def test_delta_nothing_new_is_an_empty_plan(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(4), partition_by=["lang"])
    spec = InputSpec(path=path, since=0)
    empty = plan(spec)
    assert empty.shards == [] and empty.num_rows == 0 and empty.inputs == {}
    assert empty.columns == ["id", "text", "lang"] and empty.output_partitions == ["lang"]
    since = empty.source["since"]
    assert (since["files_new"], since["files_already_seen"], since["rows_new"]) == (0, 2, 0)
    again = Plan.from_json(empty.to_json())
    assert again.shards == [] and again.source == empty.source
    # A wrong column still fails, though no shard is planned.
    with pytest.raises(CorpusError, match="column 'body' not found"):
        plan(InputSpec(path=path, since=0, text_column="body"))


def test_delta_filter_applies_before_the_increment(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(4), partition_by=["lang"])  # v0
    deltalake.write_deltalake(path, rows(4, 50), mode="append", partition_by=["lang"])  # v1
    spec = InputSpec(path=path, since=0, filter="lang = 'fr'")
    fr = plan(spec)
    assert ids_of(fr, spec) == ["r051", "r053"]
    assert fr.source["files"] == 2 and fr.source["files_skipped"] == 2  # what the filter kept
    assert (fr.source["since"]["files_new"], fr.source["since"]["files_already_seen"]) == (1, 1)


# ------------------------------------------------------------------------------------------
# Iceberg


def sql_catalog(tmp_path: Path) -> CatalogSpec:
    return CatalogSpec(
        name="lake",
        properties={
            "type": "sql",
            "uri": f"sqlite:///{tmp_path}/catalog.db",
            "warehouse": f"file://{tmp_path}/wh",
        },
    )


def iceberg_table(catalog: CatalogSpec) -> Any:
    from pyiceberg.catalog import load_catalog

    loaded = load_catalog(catalog.name, **catalog.properties)
    loaded.create_namespace_if_not_exists("ns")
    table = loaded.create_table("ns.t", schema=rows(1).schema)
    with table.update_spec() as update:
        update.add_identity("lang")
    return table


def test_iceberg_grows_by_one_partition_between_two_snapshots(tmp_path: Path) -> None:
    catalog = sql_catalog(tmp_path)
    table = iceberg_table(catalog)
    table.append(rows(6))
    first = table.current_snapshot()
    time.sleep(0.01)  # snapshot times are milliseconds
    table.append(rows(3, 100, "it"))
    second = table.current_snapshot().snapshot_id

    spec = InputSpec(table="ns.t", catalog=catalog, since="last")
    grown = plan(spec, PreviousState(version=first.snapshot_id))
    assert ids_of(grown, spec) == ["r100", "r101", "r102"]
    since = grown.source["since"]
    assert (since["to"], since["files_new"], since["files_already_seen"]) == (second, 1, 2)
    assert (since["rows_new"], since["rows_already_seen"]) == (3, 6)

    explicit = InputSpec(table="ns.t", catalog=catalog, since=first.snapshot_id)
    assert ids_of(plan(explicit), explicit) == ["r100", "r101", "r102"]
    when = datetime.datetime.fromtimestamp(first.timestamp_ms / 1000, tz=UTC)
    timed = InputSpec(table="ns.t", catalog=catalog, since=when.isoformat())
    assert plan(timed).source["since"]["from"]["version"] == first.snapshot_id
    assert ids_of(plan(timed), timed) == ["r100", "r101", "r102"]
    early = InputSpec(table="ns.t", catalog=catalog, since="2001-01-01T00:00:00+00:00")
    assert plan(early).num_rows == 9

    same = InputSpec(table="ns.t", catalog=catalog, since=second)
    assert plan(same).shards == []
    with pytest.raises(CorpusError, match=r"input.since 12345 is not a snapshot"):
        plan(InputSpec(table="ns.t", catalog=catalog, since=12345))


def test_iceberg_delete_rewrites_a_file_that_counts_as_new(tmp_path: Path) -> None:
    catalog = sql_catalog(tmp_path)
    table = iceberg_table(catalog)
    table.append(rows(6))
    first = table.current_snapshot().snapshot_id
    table.delete("id == 'r001'")  # copy-on-write: lang=fr's file rewritten
    spec = InputSpec(table="ns.t", catalog=catalog, since=first)
    assert ids_of(plan(spec), spec) == ["r003", "r005"]


# ------------------------------------------------------------------------------------------
# Parquet folders


def write(folder: Path, name: str, table: pa.Table) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / name)
    return folder / name


def test_parquet_new_and_rewritten_files_are_new_untouched_ones_not(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write(folder / "lang=de", "a.parquet", rows(2, 0, "de"))
    write(folder / "lang=de", "b.parquet", rows(2, 10, "de"))
    write(folder / "lang=fr", "c.parquet", rows(2, 20, "fr"))
    full_spec = InputSpec(path=str(folder))
    full = plan(full_spec)
    assert full.num_rows == 6

    write(folder / "lang=fr", "d.parquet", rows(3, 30, "fr"))  # new file
    write(folder / "lang=de", "b.parquet", rows(3, 10, "de"))  # rewritten in place
    spec = InputSpec(path=str(folder), since="last")
    # The state of a full run: the files its plan read.
    after_full = PreviousState(seen=digests_of_inputs(full.inputs))
    grown = plan(spec, after_full)
    assert ids_of(grown, spec) == ["r010", "r011", "r012", "r030", "r031", "r032"]
    since = grown.source["since"]
    assert (since["files_new"], since["files_already_seen"], since["to"]) == (2, 2, None)
    assert since["rows_already_seen"] is None  # Parquet: unknown without opening footers

    # Logs, _SUCCESS and table properties get the count, not the digests.
    readable = readable_source(grown.source)
    assert readable["since"]["files_seen"] == 4 and "seen" not in readable["since"]
    assert readable["format"] == "parquet" and "seen" in grown.source["since"]  # not changed
    # The increment's name: the same for the same start (a rerun), else another.
    assert increment_key(grown.source) == increment_key(plan(spec, after_full).source)
    assert increment_key(grown.source) != increment_key(plan(spec, None).source)
    assert increment_key(full.source) == ""

    # The next run starts from every live file, as this plan recorded them.
    seen = decode_seen(since["seen"])
    assert len(seen) == 4
    assert plan(spec, PreviousState(seen=seen)).shards == []  # nothing new: empty plan
    # The digest set survives JSON, and a damaged one is refused.
    assert decode_seen(encode_seen(seen)) == seen
    with pytest.raises(ValueError):
        decode_seen({**since["seen"], "count": 3})


def test_parquet_increments_on_local_and_s3(storage_root: StorageRoot) -> None:
    """A detailed listing (S3: list-objects) and fs.info (S3: HEAD, what a plan's inputs
    hold) must give the same identity, or every file would look new on S3."""
    options = storage_root.storage_options
    storage_root.write_parquet("in/a.parquet", rows(2))
    storage_root.write_parquet("in/b.parquet", rows(2, 10))
    url = storage_root.url_of("in")
    full = plan(InputSpec(path=url, storage_options=options))
    spec = InputSpec(path=url, since="last", storage_options=options)
    after_full = PreviousState(seen=digests_of_inputs(full.inputs))
    assert plan(spec, after_full).shards == []

    storage_root.write_parquet("in/c.parquet", rows(1, 20))
    storage_root.write_parquet("in/a.parquet", rows(3))  # rewritten: other size and ETag
    grown = plan(spec, after_full)
    assert ids_of(grown, spec) == ["r000", "r001", "r002", "r020"]
    assert grown.source["since"]["files_already_seen"] == 1
    assert plan(spec, PreviousState(seen=decode_seen(grown.source["since"]["seen"]))).shards == []


def test_parquet_since_a_timestamp_takes_files_modified_after_it(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    old = write(folder, "a.parquet", rows(2))
    new = write(folder, "b.parquet", rows(2, 10))
    day = datetime.datetime(2026, 11, 20, tzinfo=UTC)
    os.utime(old, (day.timestamp(), day.timestamp()))
    later = day + datetime.timedelta(days=2)
    os.utime(new, (later.timestamp(), later.timestamp()))
    spec = InputSpec(path=str(folder), since="2026-11-21T00:00:00Z")
    timed = plan(spec)
    assert ids_of(timed, spec) == ["r010", "r011"]
    assert timed.source["since"]["from"] == {"timestamp": "2026-11-21T00:00:00+00:00"}

    with pytest.raises(CorpusError, match=r"input\.since 3 names a Delta version"):
        plan(InputSpec(path=str(folder), since=3))
