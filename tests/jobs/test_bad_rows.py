"""Issue #15, findings 3 and 4: one bad value costs its row, never its shard; schema checks
look at every input file.

Each job runs through the CLI on a local Ray with the tiny Marian model, then `verify`
checks the output against the input the way a user would.
"""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from batchmt.jobs.cli import main
from batchmt.pipeline.ids import id_from_json
from batchmt.pipeline.status import INVALID, TRANSLATED
from tests.jobs.corpora import local_job_config

WORDS = ["a man is walking.", "two dogs play in the park.", "the child is sitting."]


def texts(n: int) -> list[str]:
    return [WORDS[i % len(WORDS)] for i in range(n)]


def job(tmp_path: Path, model: Path, **sections: Any) -> str:
    path = local_job_config(
        tmp_path,
        model,
        input={"path": str(tmp_path / "in")},
        model={"max_input_tokens": 40},
        decoding={"num_beams": 1, "max_new_tokens": 8},
        workers={"num_workers": 1},
        quality={"sample_per_shard": 100},
        **sections,
    )
    return str(path)


def output_rows(tmp_path: Path) -> list[dict[str, Any]]:
    return ds.dataset(tmp_path / "out" / "data", format="parquet").to_table().to_pylist()


def corrupt_text_pages(path: Path, row_group: int) -> None:
    """Overwrite the text column's pages of one row group (page headers included)."""
    column = pq.ParquetFile(path).metadata.row_group(row_group).column(1)
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(path.read_bytes())
    data[start + 8 : start + column.total_compressed_size] = b"\xff" * (
        column.total_compressed_size - 8
    )
    path.write_bytes(bytes(data))


@pytest.mark.usefixtures("ray_local")
def test_invalid_utf8_and_an_unreadable_page_cost_their_rows_not_the_shard(
    tmp_path: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    bad = pa.array([t.encode() for t in texts(20)], pa.binary()).to_pylist()
    bad[5] = b"a man \xff\xfe is walking."
    pq.write_table(
        pa.table({"id": [f"a{i:02d}" for i in range(20)], "text": pa.array(bad).view(pa.string())}),
        tmp_path / "in" / "a.parquet",
    )
    broken = tmp_path / "in" / "b.parquet"
    pq.write_table(
        pa.table({"id": [f"b{i:02d}" for i in range(20)], "text": texts(20)}),
        broken,
        row_group_size=10,
        use_dictionary=False,
    )
    corrupt_text_pages(broken, row_group=1)
    config = job(tmp_path, tiny_marian, sharding={"rows_per_shard": 100})

    assert main(["run", config, "--no-progress"]) == 0
    assert (tmp_path / "out" / "_SUCCESS").exists()
    rows = {r["id"]: r for r in output_rows(tmp_path)}
    assert len(rows) == 40
    assert rows["a05"]["status"] == INVALID and "UTF-8" in rows["a05"]["error"]
    assert rows["a05"]["text"] == "a man \ufffd\ufffd is walking."  # readable in the output
    for i in range(10, 20):
        row = rows[f"b{i:02d}"]
        assert row["status"] == INVALID, row
        assert "unreadable" in row["error"] and "'text'" in row["error"]
    others = [r for k, r in rows.items() if k != "a05" and not k.startswith("b1")]
    assert all(r["status"] in TRANSLATED for r in others)

    capsys.readouterr()
    assert main(["verify", config]) == 0
    assert "verify: OK" in capsys.readouterr().out


ID_COLUMNS = {
    "uuid": pa.array([uuid.UUID(int=i * 7919 + 1) for i in range(12)], pa.uuid()),
    "binary16": pa.array([i.to_bytes(16, "big") for i in range(12)], pa.binary(16)),
    "timestamp": pa.array(
        [datetime.datetime(2024, 1, 1, 0, 0, i) for i in range(12)], pa.timestamp("ms", tz="UTC")
    ),
    "decimal": pa.array([decimal.Decimal(f"{i}.25") for i in range(12)], pa.decimal128(8, 2)),
    "time": pa.array([datetime.time(0, 0, i) for i in range(12)], pa.time64("us")),
}


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("kind", sorted(ID_COLUMNS))
def test_every_scalar_id_type_round_trips_through_output_quality_and_verify(
    tmp_path: Path, tiny_marian: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = ID_COLUMNS[kind]
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": ids, "text": texts(12)}), tmp_path / "in" / "part.parquet")
    config = job(tmp_path, tiny_marian, sharding={"rows_per_shard": 6})

    assert main(["run", config, "--no-progress"]) == 0
    output = ds.dataset(tmp_path / "out" / "data", format="parquet").to_table()
    assert output.schema.field("id").type == ids.type
    assert sorted(output.column("id").to_pylist(), key=str) == sorted(ids.to_pylist(), key=str)

    sampled = []
    for path in sorted((tmp_path / "out" / "quality").glob("*.json")):
        quality = json.loads(path.read_text())
        assert quality["id_type"] == str(ids.type)
        sampled += [id_from_json(s["id"], ids.type) for s in quality["samples"]]
    assert sorted(s.as_py() for s in sampled) == sorted(ids.to_pylist())

    capsys.readouterr()
    assert main(["verify", config, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_a_status_column_only_in_a_later_file_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["x"]}), tmp_path / "in" / "1.parquet")
    pq.write_table(
        pa.table({"id": ["b"], "text": ["y"], "status": ["new"]}), tmp_path / "in" / "2.parquet"
    )
    config = job(tmp_path, tmp_path / "no-model")
    assert main(["run", config]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "status" in err and "2.parquet" not in err
    assert not (tmp_path / "out").exists()


def test_a_doc_id_only_in_a_later_file_plans_whole_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    pq.write_table(
        pa.table({"id": [f"a{i}" for i in range(4)], "text": texts(4)}),
        tmp_path / "in" / "1.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "id": [f"b{i}" for i in range(6)],
                "text": texts(6),
                "doc_id": ["d1"] * 3 + ["d2"] * 3,
            }
        ),
        tmp_path / "in" / "2.parquet",
    )
    config = job(tmp_path, tmp_path / "no-model", sharding={"rows_per_shard": 2})
    assert main(["plan", config, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["num_rows"] == 10
    # Documents of three rows are never split, even with two rows per shard.
    sizes = [s["num_rows"] for s in plan["shards"]]
    assert sizes == [2, 2, 3, 3]


def test_uuid_document_ids_plan_whole_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    docs = [uuid.UUID(int=1)] * 3 + [uuid.UUID(int=2)] * 3
    pq.write_table(
        pa.table(
            {
                "id": [f"r{i}" for i in range(6)],
                "text": texts(6),
                "doc_id": pa.array(docs, pa.uuid()),
            }
        ),
        tmp_path / "in" / "1.parquet",
    )
    config = job(tmp_path, tmp_path / "no-model", sharding={"rows_per_shard": 2})
    assert main(["plan", config, "--json"]) == 0
    assert [s["num_rows"] for s in json.loads(capsys.readouterr().out)["shards"]] == [3, 3]
