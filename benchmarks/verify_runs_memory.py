"""Peak memory of `batchmt verify` on an `input.since` output of two runs (issue #23).

Builds a Parquet folder input of two files (`--rows` ids each) and a plain Parquet output
of two `since: last` runs over it, written as the workers and driver write them (no model),
then runs `batchmt verify` under `/usr/bin/time -v` and prints its peak RSS, beside the
peak of the CLI's imports alone (torch and Ray come with them).

    python -m benchmarks.verify_runs_memory --rows 1000000 --out /tmp/verify-bench
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from batchmt.jobs.prepare import make_plan
from batchmt.pipeline.inputs.reader import read_shard
from batchmt.pipeline.inputs.sources.increments import increment_key
from batchmt.pipeline.outputs.commit import (
    OutputLayout,
    mark_complete,
    prepare_output,
    write_shard_data,
    write_success,
)
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.spec import load_spec


def write_input(folder: Path, name: str, start: int, rows: int) -> None:
    ids = [f"doc-{i:09d}" for i in range(start, start + rows)]
    table = pa.table({"id": ids, "text": ["short text"] * rows})
    pq.write_table(table, folder / name, row_group_size=50_000)


def one_run(config: str, finished_at: str) -> None:
    spec = load_spec(config)
    plan = make_plan(spec)
    layout = OutputLayout.for_job(spec, increment=increment_key(plan.source))
    prepare_output(layout, plan, spec.fingerprint())
    layout = replace(layout, partition_by=tuple(plan.output_partitions))
    for shard in plan.shards:
        table = read_shard(shard, spec.input)
        out = table.append_column("translation", pc.utf8_upper(table["text"]))
        out = out.append_column("status", pa.array(["ok"] * out.num_rows))
        write_shard_data(layout, shard.shard_id, out, layout.partition_of(shard))
        mark_complete(layout, ShardResult(shard.shard_id, out.num_rows, {"ok": out.num_rows}))
    summary = {"job_name": spec.job_name, "rows_in": plan.num_rows, "finished_at": finished_at}
    write_success(layout, summary)


def peak_mb(argv: list[str]) -> tuple[float, str]:
    done = subprocess.run(
        ["/usr/bin/time", "-v", *argv], capture_output=True, text=True, check=False
    )
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return (int(found.group(1)) / 1024 if found else float("nan")), done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="ids per input file / run")
    parser.add_argument("--out", type=Path, default=Path("/tmp/verify-bench"))
    args = parser.parse_args()
    root: Path = args.out
    (root / "in").mkdir(parents=True, exist_ok=False)
    spec = {
        "job_name": "nightly",
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": str(root / "in"), "since": "last"},
        "output": {"path": str(root / "out")},
        "model": {"name_or_path": "tiny"},
        "sharding": {"rows_per_shard": 100_000},
    }
    config = root / "job.yaml"
    config.write_text(yaml.safe_dump(spec))
    write_input(root / "in", "a.parquet", 0, args.rows)
    one_run(str(config), "2026-11-27T02:30:00Z")
    write_input(root / "in", "b.parquet", args.rows, args.rows)
    one_run(str(config), "2026-11-28T02:30:00Z")
    python = sys.executable
    imports, _ = peak_mb([python, "-c", "import batchmt.jobs.cli, batchmt.jobs.commands"])
    verify, report = peak_mb([python, "-m", "batchmt.jobs.cli", "verify", str(config), "--json"])
    ok = '"ok": true' in report
    print(
        f"verify of 2 runs, {2 * args.rows:,} rows: peak {verify:.0f} MB (ok={ok}); "
        f"the CLI's imports alone: {imports:.0f} MB"
    )


if __name__ == "__main__":
    main()
