"""Override rows against the same rows decoded free, each on a fresh replica: the cost a
replica's first shard pays (#22), measured the way a job sees it.

Each run is a new process that loads the default backend (CTranslate2 int8, beam 4, CPU)
as a job would: with a glossary, the constrained decoder is loaded at replica start too
(its load is reported, not counted in the rows' time). The rows then go once through the
shard loop (`translate_rows`): free without terms, forced with each row's glossary. Runs
alternate free/forced; the best of `--rounds` process CPU seconds (and wall seconds) of
the rows' call is reported, with the load average beside it.

    python -m benchmarks.placement_cold --rounds 2 \\
        out/glossary/test_2016_flickr_override.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(mode: str, path: Path, threads: int) -> dict[str, float]:
    """One fresh replica, the rows once through translate_rows (run in a child process)."""
    import torch

    from batchmt.pipeline.text.glossary import Glossary, parse_row_glossary
    from batchmt.workers.translate import RowInput, translate_rows
    from benchmarks.common import demo_engine

    torch.set_num_threads(threads)
    data = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    start = time.process_time()
    engine, _ = demo_engine(
        str(REPO / "models" / "demo-en-de"), quantization="int8", backend="ctranslate2",
        terms=mode == "forced",
    )  # fmt: skip
    load = time.process_time() - start
    rows = [
        RowInput(str(r["source"]),
                 glossary=Glossary(parse_row_glossary(r["glossary"])) if mode == "forced" else None)
        for r in data
    ]  # fmt: skip
    searched: list[int] = []
    constrain = engine.constrain

    def counted(segments: list) -> list:  # type: ignore[type-arg]
        searched.append(len(segments))
        return constrain(segments)

    engine.constrain = counted
    cpu, wall = time.process_time(), time.perf_counter()
    translate_rows(
        engine, rows, target_lang="de", max_batch_tokens=4096, max_batch_size=64,
        formats_mode="text",
    )  # fmt: skip
    return {
        "cpu": time.process_time() - cpu,
        "wall": time.perf_counter() - wall,
        "load_cpu": load,
        "to_search": float(sum(searched)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=("free", "forced"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.child, args.path, args.threads)))
        return
    best: dict[str, dict[str, float]] = {}
    loads = []
    for _ in range(args.rounds):
        for mode in ("free", "forced"):
            loads.append(os.getloadavg()[0])
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.placement_cold", str(args.path),
                 "--threads", str(args.threads), "--child", mode],
                capture_output=True, text=True, check=True, cwd=REPO,
            ).stdout.splitlines()[-1]  # fmt: skip
            found = json.loads(out)
            print(mode, found, flush=True)
            for key, value in found.items():
                best.setdefault(mode, {})
                best[mode][key] = min(best[mode].get(key, value), value)
    free, forced = best["free"], best["forced"]
    print(
        f"{args.path.name}: best of {args.rounds} fresh replicas each, load average "
        f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores\n"
        f"free   CPU {free['cpu']:.2f} s  wall {free['wall']:.2f} s  "
        f"(load {free['load_cpu']:.2f} s)\n"
        f"forced CPU {forced['cpu']:.2f} s  wall {forced['wall']:.2f} s  (load "
        f"{forced['load_cpu']:.2f} s, with the constrained decoder); "
        f"{forced['to_search']:.0f} rows to the constrained search\n"
        f"ratio  CPU {forced['cpu'] / free['cpu']:.2f}x  wall {forced['wall'] / free['wall']:.2f}x"
    )


if __name__ == "__main__":
    main()
