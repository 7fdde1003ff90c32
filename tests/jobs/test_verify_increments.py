"""`batchmt verify` of an `input.since` output (two runs into one Parquet output) streams:
ids are read one input shard or one output file at a time and counted in hash buckets on
disk, never all at once, and the counts stay exact across buckets. The runs are written as
the workers and the driver write them, without a model (no Ray)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from batchmt.jobs.cli import main
from batchmt.jobs.prepare import make_plan
from batchmt.pipeline.inputs.reader import read_shard
from batchmt.pipeline.inputs.sources.increments import increment_key
from batchmt.pipeline.outputs import verify
from batchmt.pipeline.outputs.commit import (
    OutputLayout,
    mark_complete,
    prepare_output,
    write_shard_data,
    write_success,
)
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.spec import load_spec

PER_FILE = 12_500  # two files: 25,000 input rows, more than one verify shard (10,000)


def write_file(folder: Path, name: str, start: int) -> None:
    ids = [f"id-{i:06d}" for i in range(start, start + PER_FILE)]
    table = pa.table({"id": ids, "text": [f"text {i}" for i in ids]})
    pq.write_table(table, folder / name, row_group_size=2_500)


def write_config(tmp_path: Path) -> str:
    spec = {
        "job_name": "nightly",
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": str(tmp_path / "in"), "since": "last"},
        "output": {"path": str(tmp_path / "out")},
        "model": {"name_or_path": "tiny"},
        "sharding": {"rows_per_shard": 5_000},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def run(config: str, finished_at: str, drop_first_row: bool = False) -> None:
    """One input.since run: planned from the runs before it, every shard written and marked."""
    spec = load_spec(config)
    plan = make_plan(spec)
    layout = OutputLayout.for_job(spec, increment=increment_key(plan.source))
    prepare_output(layout, plan, spec.fingerprint())
    layout = replace(layout, partition_by=tuple(plan.output_partitions))
    for k, shard in enumerate(plan.shards):
        table = read_shard(shard, spec.input)
        if drop_first_row and k == 0:
            table = table.slice(1)
        out = table.append_column("translation", pc.utf8_upper(table["text"]))
        out = out.append_column("status", pa.array(["ok"] * out.num_rows))
        write_shard_data(layout, shard.shard_id, out, layout.partition_of(shard))
        mark_complete(layout, ShardResult(shard.shard_id, out.num_rows, {"ok": out.num_rows}))
    summary = {"job_name": spec.job_name, "rows_in": plan.num_rows, "finished_at": finished_at}
    write_success(layout, summary)


def verify_json(config: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()  # the runs' own log lines
    code = main(["verify", config, "--json"])
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, report


def test_verify_of_two_runs_streams_and_counts_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in").mkdir()
    config = write_config(tmp_path)
    write_file(tmp_path / "in", "a.parquet", 0)
    run(config, "2026-11-27T02:30:00Z", drop_first_row=True)  # one id lost
    write_file(tmp_path / "in", "b.parquet", PER_FILE)
    run(config, "2026-11-28T02:30:00Z")

    # Many small buckets, and a record of how many ids were ever keyed at once.
    monkeypatch.setattr("batchmt.pipeline.outputs.id_buckets.BUCKET_ROWS", 3_000)
    sizes: list[int] = []
    keyed = verify.id_keys

    def recording(values: Any) -> list[Any]:
        sizes.append(len(values))
        return keyed(values)

    monkeypatch.setattr(verify, "id_keys", recording)
    code, report = verify_json(config, capsys)
    assert code == 1
    assert (report["input_rows"], report["output_rows"]) == (2 * PER_FILE, 2 * PER_FILE - 1)
    assert report["missing_count"] == 1 and report["missing_ids"] == ["id-000000"]
    assert report["duplicated_count"] == report["unexpected_count"] == 0
    # Never the whole input at once: at most one verify shard (10,000 ids) or one file.
    assert sizes and max(sizes) <= 10_000 < 2 * PER_FILE

    # An older run's file holding an id again (as a rerun without supersede would).
    data = sorted((tmp_path / "out" / "data").glob("*.parquet"))
    extra = pq.read_table(data[-1]).slice(0, 1)
    stray = extra.set_column(0, "id", pa.array(["id-999999"]))
    pq.write_table(pa.concat_tables([pq.read_table(data[0]), extra, stray]), data[0])
    code, report = verify_json(config, capsys)
    assert code == 1
    assert report["duplicated_count"] == 1 and report["unexpected_ids"] == ["id-999999"]
    assert report["missing_count"] == 1 and report["unexpected_count"] == 1
