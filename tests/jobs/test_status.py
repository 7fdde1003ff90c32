"""`batchmt status` reads a job's output (manifest, completion markers) without Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchmt.jobs.cli import main
from batchmt.pipeline.inputs.corpus import open_dataset
from batchmt.pipeline.inputs.shards import plan_shards
from batchmt.pipeline.outputs.commit import mark_complete, prepare_output
from batchmt.pipeline.outputs.layout import OutputLayout
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.spec import InputSpec, OutputSpec, ShardingSpec


def test_status_json_counts_completed_shards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pq.write_table(pa.table({"id": list(range(6)), "text": ["x"] * 6}), tmp_path / "in.parquet")
    input_spec = InputSpec(path=str(tmp_path / "in.parquet"))
    plan = plan_shards(open_dataset(input_spec), input_spec, ShardingSpec(rows_per_shard=3))
    layout = OutputLayout.open(OutputSpec(path=str(tmp_path / "out")))
    prepare_output(layout, plan, "spec")
    mark_complete(layout, ShardResult("00000", 3, {"ok": 2, "failed": 1}))

    assert main(["status", str(tmp_path / "out"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["shards"] == {"total": 2, "done": 1, "pending": 1}
    assert status["rows"]["by_status"] == {"failed": 1, "ok": 2}
    assert status["success"] is False
