"""Delta and Iceberg tables as job input: exactly the live rows of one pinned version,
partition filters that never open a skipped file, S3, and one-line refusals. Real
deltalake and pyiceberg (SQL catalog on SQLite), moto's S3 server; nothing mocked."""

from __future__ import annotations

import json
import struct
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from batchmt.pipeline import status
from batchmt.pipeline.inputs.corpus import CorpusError, detect_format, open_dataset
from batchmt.pipeline.inputs.plan import input_schema, plan_input
from batchmt.pipeline.inputs.reader import read_shard
from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.outputs.commit import mark_complete, prepare_output, write_shard_data
from batchmt.pipeline.outputs.layout import OutputLayout
from batchmt.pipeline.outputs.resume_checks import ManifestError, check_resumable
from batchmt.pipeline.outputs.verify import verify_output
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.spec import CatalogSpec, InputSpec, OutputSpec, ShardingSpec
from tests.conftest import S3_BUCKET

deltalake = pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg.catalog.sql")

SHARDING = ShardingSpec(rows_per_shard=3)


def rows(n: int, start: int = 0, langs: tuple[str, ...] = ("de", "fr", "it")) -> pa.Table:
    ids = [f"r{i:03d}" for i in range(start, start + n)]
    return pa.table(
        {
            "id": ids,
            "text": [f"text {i}" for i in ids],
            "lang": [langs[i % len(langs)] for i in range(start, start + n)],
        }
    )


def read_all(plan: Plan, spec: InputSpec) -> pa.Table:
    tables = [read_shard(shard, spec) for shard in plan.shards]
    return pa.concat_tables(tables)


def ids_of(plan: Plan, spec: InputSpec) -> list[str]:
    table = read_all(plan, spec)
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == plan.num_rows  # each id once
    return sorted(ids)


def plan(spec: InputSpec, **kwargs: Any) -> Plan:
    return plan_input(spec, SHARDING, **kwargs)


# ------------------------------------------------------------------------------------------
# Delta


def test_delta_overwrite_reads_only_the_live_files(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(4))
    deltalake.write_deltalake(path, rows(2, start=100), mode="overwrite")  # v1, v0 not vacuumed
    spec = InputSpec(path=path)

    latest = plan(spec)
    assert detect_format(spec) == "delta"
    assert ids_of(latest, spec) == ["r100", "r101"]
    assert latest.source["format"] == "delta" and latest.source["version"] == 1

    pinned_spec = InputSpec(path=path, version=0)
    pinned = plan(pinned_spec)
    assert ids_of(pinned, pinned_spec) == ["r000", "r001", "r002", "r003"]
    assert pinned.source["version"] == 0

    # The plan survives the manifest round trip with its source.
    again = Plan.from_json(latest.to_json())
    assert again.source == latest.source and again.partition_columns == []
    old = latest.to_dict()  # a manifest written before these fields existed
    for key in ("source", "partition_columns", "output_partitions"):
        del old[key]
    legacy = Plan.from_dict(old)
    assert (legacy.source, legacy.partition_columns, legacy.output_partitions) == ({}, [], [])

    # Parquet asked explicitly reads the folder's files as it always did: removed ones too.
    loose = InputSpec(path=path, format="parquet")
    assert plan(loose).num_rows == 6


def test_delta_delete_and_pinned_versions(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(6), partition_by=["lang"])
    deltalake.DeltaTable(path).delete("id = 'r001' or id = 'r004'")  # rewrites lang=fr
    deltalake.write_deltalake(path, rows(2, start=50), mode="append", partition_by=["lang"])
    spec = InputSpec(path=path)
    latest = plan(spec)
    assert latest.source["version"] == 2
    assert ids_of(latest, spec) == ["r000", "r002", "r003", "r005", "r050", "r051"]
    table = read_all(latest, spec)
    assert table.column_names.count("lang") == 1
    assert {r["id"]: r["lang"] for r in table.to_pylist()}["r050"] == "it"  # 50 % 3 = 2
    assert latest.partition_columns == ["lang"] and latest.output_partitions == ["lang"]
    for shard in latest.shards:  # no shard spans two partitions; every slice says its value
        assert len({piece.partition["lang"] for piece in shard.slices}) == 1

    one = InputSpec(path=path, version=1)
    assert ids_of(plan(one), one) == ["r000", "r002", "r003", "r005"]


def test_delta_files_rewritten_with_view_types_unify(tmp_path: Path) -> None:
    """delta-rs rewrites a file with string_view columns on delete; older files hold
    string: one column all the same, read back as string."""
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(2))
    deltalake.write_deltalake(path, rows(2, start=2), mode="append")
    deltalake.DeltaTable(path).delete("id = 'r000'")
    spec = InputSpec(path=path)
    planned = plan(spec)
    assert ids_of(planned, spec) == ["r001", "r002", "r003"]
    assert read_all(planned, spec).schema.field("id").type == pa.string()


def test_delta_filter_never_opens_skipped_partitions(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(9), partition_by=["lang"])
    fr = next((tmp_path / "t").glob("lang=fr/*.parquet"))
    fr.write_bytes(b"not parquet at all")  # any read of this file fails

    with pytest.raises(CorpusError, match="lang=fr"):
        plan(InputSpec(path=path))  # proof that an opened file would fail

    spec = InputSpec(path=path, filter="lang in ('de', 'it')")
    kept = plan(spec)
    assert ids_of(kept, spec) == ["r000", "r002", "r003", "r005", "r006", "r008"]
    assert kept.source["files"] == 2 and kept.source["files_skipped"] == 1
    assert kept.source["partitions"] == 2 and kept.source["partitions_skipped"] == 1
    assert kept.source["filter"] == "lang in ('de', 'it')"
    assert str(fr) not in kept.inputs


def test_output_partition_by_must_be_an_input_partition(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(6), partition_by=["lang"])
    with pytest.raises(
        CorpusError, match=r"output.partition_by names text.*partition columns: lang"
    ):
        plan(InputSpec(path=path), partition_by=["text"])
    unsplit = plan(InputSpec(path=path), partition_by=[])
    assert unsplit.output_partitions == [] and unsplit.partition_columns == ["lang"]
    assert len(unsplit.shards) == 2  # 6 rows in shards of 3, across partitions


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"filter": "text = 'x'"},
            r"names text, not a partition column .* \(partition columns: lang\)",
        ),
        ({"filter": "lang = 'es'"}, r"matches none of the 3 partition\(s\)"),
        ({"filter": "lang = "}, r"input.filter"),
        ({"version": 7}, r"input.version 7 of Delta table .* does not exist \(latest is 0\)"),
    ],
)
def test_delta_errors_are_one_line(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(6), partition_by=["lang"])
    with pytest.raises(CorpusError, match=message) as error:
        plan(InputSpec(path=path, **kwargs))
    assert "\n" not in str(error.value)


def test_a_loose_folder_reader_refuses_a_table(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(3))
    with pytest.raises(CorpusError, match="is a delta table"):
        open_dataset(InputSpec(path=path))
    assert input_schema(InputSpec(path=path)).names == ["id", "text", "lang"]


def test_delta_column_mapping_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(3), configuration={"delta.columnMapping.mode": "name"})
    with pytest.raises(CorpusError, match=r"column mapping \(mode name\).*rewrite it"):
        plan(InputSpec(path=path))


_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def _z85(data: bytes) -> str:
    data += b"\0" * (-len(data) % 4)
    out = []
    for i in range(0, len(data), 4):
        value = int.from_bytes(data[i : i + 4], "big")
        chunk = []
        for _ in range(5):
            value, digit = divmod(value, 85)
            chunk.append(_Z85[digit])
        out.extend(reversed(chunk))
    return "".join(out)


def _inline_deletion_vector(deleted: list[int]) -> dict[str, Any]:
    """A Delta inline deletion vector (as Spark writes one): magic, a RoaringBitmapArray of
    one portable 32-bit roaring bitmap with one array container, Z85-encoded."""
    rows = sorted(deleted)
    bitmap = struct.pack("<II", 12346, 1) + struct.pack("<HH", 0, len(rows) - 1)
    bitmap += struct.pack("<I", 16) + b"".join(struct.pack("<H", r) for r in rows)
    data = struct.pack("<iqi", 1681511377, 1, 0) + bitmap
    return {
        "storageType": "i",
        "pathOrInlineDv": _z85(data),
        "sizeInBytes": len(data),
        "cardinality": len(rows),
    }


def test_delta_deletion_vectors_are_refused(tmp_path: Path) -> None:
    """delta-rs deletes by rewriting files, so the deletion vector is written into the log
    by hand, as Spark/Databricks write one; delta-rs reads it back."""
    path = tmp_path / "t"
    deltalake.write_deltalake(
        str(path), rows(3), configuration={"delta.enableDeletionVectors": "true"}
    )
    log = path / "_delta_log"
    actions = [json.loads(line) for line in (log / f"{0:020d}.json").read_text().splitlines()]
    add = next(a["add"] for a in actions if "add" in a)
    commit = [
        {
            "remove": {
                "path": add["path"],
                "deletionTimestamp": add["modificationTime"] + 1,
                "dataChange": True,
            }
        },
        {"add": {**add, "deletionVector": _inline_deletion_vector([1])}},
    ]
    (log / f"{1:020d}.json").write_text("".join(json.dumps(c) + "\n" for c in commit))
    table = deltalake.DeltaTable(str(path))
    assert pa.table(table.deletion_vectors()).column("selection_vector").to_pylist() == [
        [True, False, True]
    ]
    with pytest.raises(CorpusError, match=r"version 1 has deletion vectors on 1 file\(s\).*PURGE"):
        plan(InputSpec(path=str(path)))
    before = InputSpec(path=str(path), version=0)  # the version before the delete reads
    assert ids_of(plan(before), before) == ["r000", "r001", "r002"]


def test_delta_deletion_vector_feature_without_vectors_reads(tmp_path: Path) -> None:
    """The table feature alone is fine: delta-rs deletes by rewriting files."""
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(4), configuration={"delta.enableDeletionVectors": "true"})
    deltalake.DeltaTable(path).delete("id = 'r002'")
    spec = InputSpec(path=path)
    assert ids_of(plan(spec), spec) == ["r000", "r001", "r003"]


def test_a_vacuumed_pinned_version_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(4))
    deltalake.write_deltalake(path, rows(2, start=10), mode="overwrite")
    before = plan(InputSpec(path=path, version=0))
    deltalake.DeltaTable(path).vacuum(
        retention_hours=0, enforce_retention_duration=False, dry_run=False
    )
    with pytest.raises(CorpusError, match=r"delta table .* version 0 is gone \(VACUUM"):
        plan(InputSpec(path=path), version=0)  # a resume plans the manifest's version
    assert before.num_rows == 4


def test_resume_plans_the_pinned_version_and_refuses_another(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(4))
    spec = InputSpec(path=path)
    stored = plan(spec)
    deltalake.write_deltalake(path, rows(2, start=10), mode="overwrite")  # the table moves on
    again = plan(spec, version=stored.source["version"])
    check_resumable(stored, again, "out/_manifest.json")  # same version: resumable
    assert again.fingerprint == stored.fingerprint
    with pytest.raises(ManifestError, match="delta table version 0, the input now plans delta"):
        check_resumable(stored, plan(spec), "out/_manifest.json")


# ------------------------------------------------------------------------------------------
# Parquet hive folders with a filter


def test_hive_filter_never_opens_skipped_files(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    for lang in ("de", "fr"):
        (tmp_path / "in" / f"lang={lang}").mkdir(parents=True)
        table = rows(4).drop_columns(["lang"])
        pq.write_table(
            table.slice(0 if lang == "de" else 2, 2), tmp_path / "in" / f"lang={lang}" / "p.parquet"
        )
    # Sorted first, so a dataset would open it for its schema: the filter must not.
    (tmp_path / "in" / "lang=de" / "p.parquet").write_bytes(b"broken")
    spec = InputSpec(path=str(tmp_path / "in"), filter="lang = 'fr'")
    kept = plan(spec)
    assert ids_of(kept, spec) == ["r002", "r003"]
    assert kept.source == {
        "format": "parquet",
        "version": None,
        "filter": "lang = 'fr'",
        "files": 1,
        "files_skipped": 1,
        "partitions": 1,
        "partitions_skipped": 1,
    }
    with pytest.raises(CorpusError, match=r"input\.version names a Delta version"):
        plan(InputSpec(path=str(tmp_path / "in"), version=3))


# ------------------------------------------------------------------------------------------
# Iceberg


def sql_catalog(tmp_path: Path, warehouse: str, **properties: str) -> CatalogSpec:
    return CatalogSpec(
        name="lake",
        properties={
            "type": "sql",
            "uri": f"sqlite:///{tmp_path}/catalog.db",
            "warehouse": warehouse,
            **properties,
        },
    )


def iceberg_table(catalog: CatalogSpec, name: str = "ns.t", partitioned: bool = True) -> Any:
    from pyiceberg.catalog import load_catalog

    loaded = load_catalog(catalog.name, **catalog.properties)
    loaded.create_namespace_if_not_exists(name.split(".")[0])
    table = loaded.create_table(name, schema=rows(1).schema)
    if partitioned:
        with table.update_spec() as update:
            update.add_identity("lang")
    return table


def test_iceberg_delete_and_pinned_snapshot(tmp_path: Path) -> None:
    catalog = sql_catalog(tmp_path, f"file://{tmp_path}/wh")
    table = iceberg_table(catalog)
    table.append(rows(6))
    first = table.current_snapshot().snapshot_id
    table.delete("id == 'r001'")  # pyiceberg rewrites the lang=fr file (copy-on-write)
    table.append(rows(2, start=20))

    spec = InputSpec(table="ns.t", catalog=catalog)
    latest = plan(spec)
    assert latest.source["format"] == "iceberg"
    assert latest.source["version"] == table.current_snapshot().snapshot_id
    assert ids_of(latest, spec) == ["r000", "r002", "r003", "r004", "r005", "r020", "r021"]
    out = read_all(latest, spec)
    assert out.column_names == ["id", "text", "lang"]  # the partition column once, not twice
    assert latest.partition_columns == ["lang"]
    assert all(piece.partition for s in latest.shards for piece in s.slices)

    pinned = InputSpec(table="ns.t", catalog=catalog, version=first)
    assert ids_of(plan(pinned), pinned) == [f"r{i:03d}" for i in range(6)]

    # The table folder alone (no catalog): its newest metadata file, the same rows.
    folder = InputSpec(path=table.location().removeprefix("file://"))
    assert detect_format(folder) == "iceberg"
    assert ids_of(plan(folder), folder) == ids_of(latest, spec)

    filtered = InputSpec(table="ns.t", catalog=catalog, filter="lang = 'de'")
    assert ids_of(plan(filtered), filtered) == ["r000", "r003", "r021"]

    with pytest.raises(CorpusError, match=r"input.version 12345 is not a snapshot"):
        plan(InputSpec(table="ns.t", catalog=catalog, version=12345))
    with pytest.raises(CorpusError, match=r"input.table ns.nope not found"):
        plan(InputSpec(table="ns.nope", catalog=catalog))


def test_iceberg_renamed_column_is_refused(tmp_path: Path) -> None:
    catalog = sql_catalog(tmp_path, f"file://{tmp_path}/wh")
    table = iceberg_table(catalog, partitioned=False)
    table.append(rows(3))
    before = table.current_snapshot().snapshot_id
    with table.update_schema() as update:
        update.rename_column("text", "body")
    table.append(rows(2, start=10).rename_columns(["id", "body", "lang"]))
    spec = InputSpec(table="ns.t", catalog=catalog, text_column="body")
    with pytest.raises(CorpusError, match=r"column 'text' was renamed to 'body'"):
        plan(spec)
    old = InputSpec(table="ns.t", catalog=catalog, version=before)
    assert ids_of(plan(old), old) == ["r000", "r001", "r002"]


# ------------------------------------------------------------------------------------------
# S3 (moto)


def test_delta_on_s3(s3_endpoint: str) -> None:
    url = f"s3://{S3_BUCKET}/{uuid.uuid4().hex}/t"
    write_options = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }
    deltalake.write_deltalake(url, rows(4), partition_by=["lang"], storage_options=write_options)
    deltalake.write_deltalake(
        url,
        rows(3, start=10),
        mode="overwrite",
        partition_by=["lang"],
        storage_options=write_options,
    )
    # The job's own spelling: s3fs options; credentials from the environment.
    spec = InputSpec(path=url, storage_options={"endpoint_url": s3_endpoint}, filter="lang != 'it'")
    latest = plan(spec)
    assert latest.source["version"] == 1
    assert ids_of(latest, spec) == ["r010", "r012"]
    assert all(p.startswith(f"s3://{S3_BUCKET}/") for p in latest.inputs)
    old = InputSpec(
        path=url, storage_options={"client_kwargs": {"endpoint_url": s3_endpoint}}, version=0
    )
    assert ids_of(plan(old), old) == ["r000", "r001", "r002", "r003"]


def test_iceberg_on_s3(tmp_path: Path, s3_endpoint: str) -> None:
    warehouse = f"s3://{S3_BUCKET}/{uuid.uuid4().hex}/wh"
    catalog = sql_catalog(
        tmp_path, warehouse, **{"s3.endpoint": s3_endpoint, "s3.region": "us-east-1"}
    )
    table = iceberg_table(catalog)
    table.append(rows(5))
    table.delete("id == 'r002'")
    options = {"endpoint_url": s3_endpoint}
    spec = InputSpec(table="ns.t", catalog=catalog, storage_options=options)
    assert ids_of(plan(spec), spec) == ["r000", "r001", "r003", "r004"]
    # No storage_options: the catalog's S3 properties open the data files too.
    bare = InputSpec(table="ns.t", catalog=catalog)
    assert ids_of(plan(bare), bare) == ["r000", "r001", "r003", "r004"]
    # Without a catalog: the table folder on S3, FileIO settings from storage_options.
    folder = InputSpec(path=table.location(), storage_options=options)
    assert detect_format(folder) == "iceberg"
    assert ids_of(plan(folder), folder) == ["r000", "r001", "r003", "r004"]


def test_storage_options_in_the_spellings_delta_rs_and_pyiceberg_want(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from batchmt.pipeline.inputs.sources.iceberg import fileio_properties
    from batchmt.pipeline.storage.object_store import delta_rs_options

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    s3fs_style = {
        "client_kwargs": {"endpoint_url": "http://minio:9000", "region_name": "us-east-2"},
        "key": "AK",
        "secret": "SK",
    }
    assert delta_rs_options("s3://b/t", s3fs_style) == {
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "AWS_REGION": "us-east-2",
        "AWS_ACCESS_KEY_ID": "AK",
        "AWS_SECRET_ACCESS_KEY": "SK",
        "AWS_ALLOW_HTTP": "true",
    }
    assert delta_rs_options("s3://b/t", {"endpoint_url": "https://r2", "timeout": 5}) == {
        "AWS_ENDPOINT_URL": "https://r2",
        "AWS_REGION": "eu-west-1",
    }
    assert delta_rs_options("/local/t", {"AWS_X": "1", "auto_mkdir": True}) == {"AWS_X": "1"}
    # Public buckets (s3fs anon=True) are read unsigned; delta-rs spellings pass through.
    assert delta_rs_options("s3://b/t", {"anon": True, "aws_conditional_put": "etag"}) == {
        "AWS_SKIP_SIGNATURE": "true",
        "aws_conditional_put": "etag",
        "AWS_REGION": "eu-west-1",
    }
    assert fileio_properties(s3fs_style) == {
        "s3.endpoint": "http://minio:9000",
        "s3.region": "us-east-2",
        "s3.access-key-id": "AK",
        "s3.secret-access-key": "SK",
    }


def _publish_all(output: str, planned: Plan, spec: InputSpec) -> OutputLayout:
    """What workers and the driver do for each shard: data, then the completion marker."""
    layout = OutputLayout.open(OutputSpec(path=output))
    prepare_output(layout, planned, "spec")
    for shard in planned.shards:
        table = read_shard(shard, spec)
        n = table.num_rows
        out = (
            table.append_column("translation", table.column("text"))
            .append_column("status", pa.array([status.OK] * n))
            .append_column("error", pa.nulls(n, pa.string()))
        )
        write_shard_data(layout, shard.shard_id, out)
        mark_complete(layout, ShardResult(shard_id=shard.shard_id, num_rows=n))
    return layout


def test_verify_counts_only_the_filtered_pinned_input(tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    deltalake.write_deltalake(path, rows(9), partition_by=["lang"])
    spec = InputSpec(path=path, filter="lang != 'it'")
    planned = plan(spec)
    layout = _publish_all(str(tmp_path / "out"), planned, spec)
    deltalake.write_deltalake(path, rows(3, start=50), mode="append", partition_by=["lang"])
    report = verify_output(layout, spec)  # a later version is not this job's input
    assert report.ok and report.input_rows == 6 and report.unplanned_input_rows == 0

    import pyarrow.parquet as pq

    for lang in ("de", "fr"):
        (tmp_path / "hive" / f"lang={lang}").mkdir(parents=True)
        pq.write_table(
            rows(2, start=10 if lang == "de" else 20),
            tmp_path / "hive" / f"lang={lang}" / "p.parquet",
        )
    hive = InputSpec(path=str(tmp_path / "hive"), filter="lang = 'fr'")
    layout = _publish_all(str(tmp_path / "out2"), plan(hive), hive)
    report = verify_output(layout, hive)  # the skipped partition is not missing
    assert report.ok and report.input_rows == 2
