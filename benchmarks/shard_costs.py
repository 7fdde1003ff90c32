"""Where one shard's time goes inside the actor (issue #11): read, context, translate,
publish data, quality, publish quality; the fixed part against the translation.

Runs `TranslatorActor.process_shard` in this process (no Ray) on one shard of `--rows`
Multi30k train rows (the default shard size holds them all), with each step the actor calls
wrapped in a timer. The completion marker is the driver's (one small PUT), not timed here.

    python -m benchmarks.shard_costs --rows 5000 --threads 2
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

REPO = Path(__file__).resolve().parents[1]
STEPS = (
    "read_shard_data",
    "context_windows",
    "translate_rows",
    "write_shard_data",
    "shard_quality",
    "write_quality",
)


def timed(seconds: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start

    return run


def main() -> None:
    from batchmt.jobs.prepare import make_plan
    from batchmt.pipeline.spec import spec_from_dict
    from batchmt.workers import actor

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "demo-en-de"))
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = (args.data_dir / "multi30k" / "train.en").read_text(encoding="utf-8").splitlines()
    refs = (args.data_dir / "multi30k" / "train.de").read_text(encoding="utf-8").splitlines()
    work = Path(tempfile.mkdtemp(prefix="shard-costs-"))
    n = args.rows
    pq.write_table(
        pa.table({"id": list(range(n)), "text": lines[:n], "reference": refs[:n]}),
        work / "rows.parquet",
    )
    spec = spec_from_dict(
        {
            "source_lang": "en",
            "target_lang": "de",
            "input": {"path": str(work / "rows.parquet")},
            "output": {"path": str(work / "out")},
            "model": {"name_or_path": args.model, "quantization": "int8"},
        }
    )
    shards = make_plan(spec).shards
    seconds: dict[str, float] = {}
    steps = [name for name in STEPS if hasattr(actor, name)]  # the actor's own imports
    for name in steps:
        setattr(actor, name, timed(seconds, name, getattr(actor, name)))
    replica = actor.TranslatorActor(spec.model_dump_json(), str(REPO), args.threads)
    start = time.perf_counter()
    for shard in shards:
        replica.process_shard(shard, 1)
    total = time.perf_counter() - start
    print(f"\n{n} rows in {len(shards)} shard(s), {replica.engine.signature}")
    translate = seconds["translate_rows"]
    for name in steps:
        share = seconds.get(name, 0.0) / translate
        print(f"{name:<18} {seconds.get(name, 0.0):>8.3f} s  {share:>7.2%} of translate")
    fixed = total - translate
    print(f"{'fixed (all else)':<18} {fixed:>8.3f} s  {fixed / translate:>7.2%} of translate")


if __name__ == "__main__":
    main()
