"""Calibrate `min_logprob` (row-level QE, `batchmt score`) on more than one set.

The demo model's forced-decoding log-prob of human references is lower on text it was
not tuned on (Multi30k test_2017: 11.4 % of correct rows flagged at -3.5, against 5.4 %
on test_2016), so the threshold is read off a pool of sets, not one:
  val                      the dev split (all 1,014 rows)
  test_2016_flickr, even   a second in-domain set: its even lines
and checked on what calibration never saw: test_2016_flickr's odd lines (`python -m
benchmarks.qe --rows odd`). Each set is the faulty set of `qe_faults.py` (half correct
references, half one injected fault); the log-probs are the engine's own `score` (the
path `batchmt score` takes). Printed: percentiles of correct rows and of each fault, and
the flag rates a candidate threshold gives on each set.

The English news of the shared data (WMT newstest2017, `wmt_zh_en/*.en`, no German side)
has no reference to score, so it calibrates the other threshold, `min_output_logprob`
(the model's own output in `run`): printed are the percentiles of its beam outputs'
log-probs there and on val.

    python -m benchmarks.qe_calibrate --threshold -4.0 --news 300
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from batchmt.workers.engines.base import Segment
from benchmarks.qe_faults import CORRECT, FAULTS, faulty_set

REPO = Path(__file__).resolve().parents[1]
NEWS = REPO.parent / "shared" / "data" / "wmt_zh_en" / "newstest2017.zh-en.en"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


def scores(engine: object, split: str, rows: str) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    data = faulty_set(split, half=rows)
    for start in range(0, len(data), 64):
        chunk = data[start : start + 64]
        got = engine.score([Segment(r.source) for r in chunk], [r.translation for r in chunk])  # type: ignore[attr-defined]
        for row, value in zip(chunk, got, strict=True):
            found.setdefault(row.fault, []).append(float(value))
    return found


def main() -> None:
    from benchmarks.common import demo_engine

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threshold", type=float, action="append", default=[])
    parser.add_argument("--news", type=int, default=300, help="news sentences (0: skip)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine, translate = demo_engine(str(REPO / "models" / "demo-en-de"), quantization="int8",
                                    backend="ctranslate2")  # fmt: skip
    sets = {"val": ("val", "all"), "test_2016 even": ("test_2016_flickr", "even"),
            "test_2016 odd (held out)": ("test_2016_flickr", "odd")}  # fmt: skip
    pooled: list[float] = []
    found = {name: scores(engine, *where) for name, where in sets.items()}
    for name, by_fault in found.items():
        correct = by_fault[CORRECT]
        if "held out" not in name:
            pooled += correct
        line = ", ".join(f"p{q} {pct(correct, q):.2f}" for q in (1, 2, 3, 5, 10, 50))
        print(f"{name}: correct {len(correct)} rows: {line}")
        for fault in FAULTS:
            values = by_fault.get(fault, [])
            print(
                f"  {fault:<15} median {statistics.median(values):.2f}, p90 {pct(values, 90):.2f}"
            )
    print("pooled calibration correct rows: " + ", ".join(
        f"p{q} {pct(pooled, q):.2f}" for q in (1, 2, 3, 4, 5)))  # fmt: skip
    for threshold in args.threshold:
        for name, by_fault in found.items():
            rates = {}
            for fault in (CORRECT, *FAULTS):
                values = by_fault.get(fault, [])
                rates[fault] = sum(v < threshold for v in values) / max(1, len(values))
            text = ", ".join(f"{f} {r:.1%}" for f, r in rates.items())
            print(f"min_logprob {threshold}: {name}: low_confidence on {text}")
    if args.news:
        lines = [t for t in NEWS.read_text(encoding="utf-8").splitlines() if t.strip()][: args.news]
        val = (
            (REPO.parent / "shared" / "data" / "multi30k" / "val.en")
            .read_text(encoding="utf-8")
            .splitlines()[: args.news]
        )
        for name, texts in (("news", lines), ("val", val)):
            outs = translate(texts)
            own = engine.score([Segment(t) for t in texts], outs)
            line = ", ".join(f"p{q} {pct(own, q):.2f}" for q in (1, 5, 10, 50))
            print(f"own output {name} ({len(texts)}): {line}")


if __name__ == "__main__":
    main()
