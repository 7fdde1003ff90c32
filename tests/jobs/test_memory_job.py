"""`batchmt run` with a translation memory on S3 (moto's server), two replicas writing it at
once: the job fills it, a rerun of the finished job into a new output is served from it
byte for byte, and `_SUCCESS` and `batchmt status` count the rows that were."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchmt.jobs.cli import main
from batchmt.pipeline.columns import FROM_MEMORY
from batchmt.pipeline.status import TRANSLATED
from batchmt.pipeline.storage.fs import open_fs
from tests.conftest import S3_BUCKET, StorageRoot
from tests.jobs.corpora import corpus_table
from tests.jobs.test_run import job_config, write_config

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


def repeating_corpus(n: int) -> pa.Table:
    """`n` rows where about 30 % repeat an earlier row's text (boilerplate), in any shard."""
    table = corpus_table(n, awkward=False)
    texts = table.column("text").to_pylist()
    rng = random.Random(7)
    for i in rng.sample(range(1, n), int(n * 0.3)):
        texts[i] = texts[rng.randrange(i)]
    return table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts))


def read_data(out: Path) -> pa.Table:
    table = pa.concat_tables(pq.read_table(p) for p in sorted((out / "data").glob("*.parquet")))
    return table.sort_by("id")


def memory_keys(url: str, options: dict[str, Any]) -> list[str]:
    fs, root = open_fs(url, options)
    keys: list[str] = []
    for path in fs.ls(root, detail=False):
        with fs.open(path, "rb") as f:
            keys += pq.read_table(f, columns=["key"]).column("key").to_pylist()
    return keys


def test_rerun_is_served_from_memory_and_counted(
    tiny_marian: Path, tmp_path: Path, s3_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = StorageRoot("local", str(tmp_path / "root"))
    table = repeating_corpus(160)
    root.write_parquet("in/corpus.parquet", table)
    memory = {
        "path": f"s3://{S3_BUCKET}/{uuid.uuid4().hex}/tm",
        "storage_options": {"endpoint_url": s3_endpoint},
    }
    config = job_config(root, tiny_marian, rows_per_shard=20, cache=memory)
    assert main(["run", write_config(tmp_path, **config), "--no-progress"]) == 0
    out = Path(root.url_of("out"))
    first = read_data(out)
    statuses = first.column("status").to_pylist()
    texts = [t for t, s in zip(first["text"].to_pylist(), statuses, strict=True) if s in TRANSLATED]
    success = json.loads((out / "_SUCCESS").read_text())
    # Two replicas: a repeat is decoded again only when its first copy was being decoded
    # by the other replica at the same time; every repeat served is counted.
    assert success["memory"]["from_memory"] == sum(first[FROM_MEMORY].to_pylist())
    assert 0 < success["memory"]["from_memory"] <= len(texts) - len(set(texts))
    # Both replicas wrote at once: every distinct translation is in the memory.
    keys = memory_keys(memory["path"], memory["storage_options"])
    assert len(set(keys)) == len(set(texts)) and success["memory"]["stored"] == len(keys)

    # The finished job again, into a new output: nothing decoded, the same rows.
    config["output"] = {**config["output"], "path": root.url_of("out2")}
    assert main(["run", write_config(tmp_path, **config), "--no-progress"]) == 0
    capsys.readouterr()
    second = read_data(Path(root.url_of("out2")))
    assert second.drop_columns([FROM_MEMORY]).equals(first.drop_columns([FROM_MEMORY]))
    assert second[FROM_MEMORY].to_pylist() == [s in TRANSLATED for s in statuses]
    success = json.loads((Path(root.url_of("out2")) / "_SUCCESS").read_text())
    assert success["memory"] == {"from_memory": len(texts), "deduplicated": 0, "stored": 0}
    assert success["source_tokens"] == 0

    assert main(["status", root.url_of("out2"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["memory"]["from_memory"] == len(texts)
    assert main(["status", root.url_of("out2")]) == 0
    assert f"memory:  {len(texts)} rows reused" in capsys.readouterr().out
