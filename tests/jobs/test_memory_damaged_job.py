"""Issue #23, finding 9, through `batchmt run`: a translation memory with one damaged file
(and a file of random bytes named like one) keeps serving its good files; only the damaged
file's rows are decoded again (and written to a new file)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batchmt.jobs.cli import main
from tests.conftest import StorageRoot
from tests.jobs.corpora import corpus_table
from tests.jobs.test_run import job_config, write_config

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


def test_a_damaged_memory_file_costs_only_its_rows(tiny_marian: Path, tmp_path: Path) -> None:
    root = StorageRoot("local", str(tmp_path / "root"))
    root.write_parquet("in/corpus.parquet", corpus_table(60, awkward=False))
    memory = tmp_path / "tm"
    config = job_config(root, tiny_marian, rows_per_shard=20, cache={"path": str(memory)})
    config["workers"] = {"num_workers": 1}
    assert main(["run", write_config(tmp_path, **config), "--no-progress"]) == 0
    files = sorted(memory.glob("part-*.parquet"))
    assert len(files) == 3  # one per shard
    rows = {f: pq.read_metadata(f).num_rows for f in files}
    damaged = files[1]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # cut in half
    (memory / "part-00000000T000000000-random.parquet").write_bytes(random.randbytes(4096))

    config["output"] = {**config["output"], "path": root.url_of("out2")}
    assert main(["run", write_config(tmp_path, **config), "--no-progress"]) == 0
    success = json.loads((Path(root.url_of("out2")) / "_SUCCESS").read_text())
    served = sum(n for f, n in rows.items() if f != damaged)
    assert success["memory"]["from_memory"] == served  # before: 0, the memory turned off
    assert success["memory"]["stored"] == rows[damaged]  # only its rows written again
