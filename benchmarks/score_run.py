"""BLEU / chrF of a `batchmt run` output against references, joined by id.

    python -m benchmarks.score_run OUT_DIR REFERENCES.parquet --target de

REFERENCES.parquet holds `id` and `reference` (the rows the job's input had); OUT_DIR is the
job's `output.path` (its `data/` Parquet files).
"""

from __future__ import annotations

import argparse

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from batchmt.jobs.quantize.evaluate import score


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("references")
    parser.add_argument("--target", default="de")
    args = parser.parse_args()
    rows = ds.dataset(f"{args.out}/data", format="parquet").to_table(["id", "translation"])
    output = dict(zip(rows["id"].to_pylist(), rows["translation"].to_pylist()))
    refs = pq.read_table(args.references, columns=["id", "reference"]).to_pylist()
    hyps = [output[r["id"]] or "" for r in refs]
    scores = score(hyps, [r["reference"] for r in refs], args.target)
    print(f"{len(refs)} rows: BLEU {scores.bleu:.2f} chrF {scores.chrf:.2f}")


if __name__ == "__main__":
    main()
