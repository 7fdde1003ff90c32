"""Row-level QE on a faulty set: flag rates of `batchmt score` with the demo model.

    python -m benchmarks.qe                      # Multi30k test_2016_flickr, all 1,000 rows
    python -m benchmarks.qe --split val          # a calibration split
    python -m benchmarks.qe --rows odd           # test_2016 odd lines, held out (#22)
    python -m benchmarks.qe --size 200 --set quality.thresholds.min_logprob=-3

Builds the set of `benchmarks/qe_faults.py` (half correct references, half one injected
fault each), writes it as a Parquet input with `translation` and `reference` columns, runs
`batchmt score` on it (local Ray, the real shard/commit path) and prints, per fault, the
share of rows flagged, and which flags fired. Done when: faulty rows flagged >= 90 %,
correct rows flagged <= 10 %.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from benchmarks.qe_faults import CORRECT, FAULTS, faulty_set

ROOT = Path(__file__).resolve().parents[1]


def write_input(path: Path, split: str, size: int | None, rows_of: str = "all") -> dict[int, str]:
    rows = faulty_set(split, size, half=rows_of)
    table = pa.table(
        {
            "id": [r.id for r in rows],
            "text": [r.source for r in rows],
            "translation": [r.translation for r in rows],
            "reference": [r.reference for r in rows],
        }
    )
    pq.write_table(table, path)
    return {r.id: r.fault for r in rows}


def flag_rates(output: Path, faults: dict[int, str]) -> dict[str, dict[str, object]]:
    table = pq.read_table(output / "data", columns=["id", "qe_flags"])
    flagged: dict[str, list[bool]] = defaultdict(list)
    fired: dict[str, Counter[str]] = defaultdict(Counter)
    for row_id, flags in zip(table.column("id").to_pylist(), table.column("qe_flags").to_pylist()):
        fault = faults[row_id]
        flagged[fault].append(bool(flags))
        fired[fault].update(flags)
    report: dict[str, dict[str, object]] = {}
    for fault in (CORRECT, *FAULTS):
        marks = flagged.get(fault, [])
        report[fault] = {
            "rows": len(marks),
            "flagged": sum(marks) / len(marks) if marks else 0.0,
            "flags": dict(fired[fault].most_common()),
        }
    faulty = [m for f in FAULTS for m in flagged.get(f, [])]
    report["all_faulty"] = {"rows": len(faulty), "flagged": sum(faulty) / max(1, len(faulty))}
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test_2016_flickr")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument(
        "--rows",
        default="all",
        choices=("all", "even", "odd"),
        help="odd: test_2016's lines that calibration (qe_calibrate) never saw",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        faults = write_input(work / "faulty.parquet", args.split, args.size, args.rows)
        config = {
            "job_name": "qe-faulty-set",
            "source_lang": "en",
            "target_lang": "de",
            "input": {"path": str(work / "faulty.parquet")},
            "output": {"path": str(work / "out")},
            "model": {"name_or_path": str(ROOT / "models" / "demo-en-de")},
            "workers": {"num_workers": 1},
            "sharding": {"rows_per_shard": 250},
        }
        (work / "job.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        command = [sys.executable, "-m", "batchmt.jobs.cli", "--log-level", "WARNING"]
        command += ["score", str(work / "job.yaml"), "--no-progress"]
        command += [f"--set={item}" for item in args.overrides]
        subprocess.run(command, check=True, cwd=ROOT)
        report = flag_rates(work / "out", faults)
    print(json.dumps(report, indent=2))
    correct, faulty = report[CORRECT]["flagged"], report["all_faulty"]["flagged"]
    print(f"faulty rows flagged {faulty:.1%} (goal >= 90%), correct {correct:.1%} (<= 10%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
