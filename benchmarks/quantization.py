"""FP32 vs INT8 replicas of a demo model on its test split, side by side in one run.

Each precision runs in its own subprocess so that peak RSS belongs to that precision alone;
both use the same batching (length-sorted batches, beam 4) and the same sentences.

    python -m benchmarks.quantization --model models/demo-en-de --pair en-de --threads 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"bleu_drop": 0.8, "memory_ratio": 0.40, "speedup": 1.3}


def run_precision(args: argparse.Namespace) -> dict[str, Any]:
    """Load, quantize, translate and score once; this runs inside the subprocess."""
    import torch

    from batchmt.workers.engines.quantize import weight_bytes
    from benchmarks.common import demo_engine
    from tools.train_demo.data import load_splits
    from tools.train_demo.evaluate import score

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    splits = load_splits(args.pair, args.data_dir)
    test_name, (sources, refs) = next(iter(splits.tests.items()))
    sources, refs = sources[: args.limit], refs[: args.limit]
    # The production path: the worker's engine and shard loop (length-sorted token-budget
    # batches, our decoding loop), so the ratio is the one a job sees.
    src_lang, tgt_lang = args.pair.split("-")
    engine, translate = demo_engine(
        args.model,
        quantization=args.worker,
        device=device,
        source_lang=src_lang,
        target_lang=tgt_lang,
    )
    model, tokenizer = engine.model, engine.tokenizer
    translate(sources[: args.batch_size])  # warm-up, not timed
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    hyps = translate(sources)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = sum(len(ids) for ids in tokenizer(text_target=hyps)["input_ids"])
    result = score(hyps, refs) | {
        "precision": args.worker,
        "test_set": test_name,
        "weight_bytes": weight_bytes(model),
        "seconds": seconds,
        "target_tokens_per_s": tokens / seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if device.type == "cuda":
        result["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    return result


def spawn(args: argparse.Namespace, precision: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.quantization", *sys.argv[1:]]
        cmd += ["--worker", precision, "--json-out", str(out)]
        subprocess.run(cmd, check=True, cwd=REPO_ROOT)
        return json.loads(out.read_text())


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def print_table(rows: list[dict[str, Any]]) -> dict[str, float]:
    base = rows[0]
    head = "precision | weight memory | peak RSS | time | tgt tok/s | BLEU | chrF"
    print(f"\n{rows[0]['test_set']} (n={rows[0]['n']}, beam 4, batch length-sorted)")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['precision']:<9} | {mib(r['weight_bytes']):>13} | {mib(r['peak_rss_bytes']):>8} "
            f"| {r['seconds']:5.1f}s | {r['target_tokens_per_s']:9.0f} | {r['bleu']:5.2f} "
            f"| {r['chrf']:5.2f}"
        )
    ratios: dict[str, float] = {}
    if len(rows) > 1:
        q = rows[1]
        ratios = {
            "memory_ratio": q["weight_bytes"] / base["weight_bytes"],
            "rss_ratio": q["peak_rss_bytes"] / base["peak_rss_bytes"],
            "speedup": q["target_tokens_per_s"] / base["target_tokens_per_s"],
            "bleu_drop": base["bleu"] - q["bleu"],
            "chrf_drop": base["chrf"] - q["chrf"],
        }
        print(
            f"ratios INT8/FP32: weight memory {ratios['memory_ratio']:.2f} "
            f"(target <= {TARGETS['memory_ratio']}), peak RSS {ratios['rss_ratio']:.2f}, "
            f"throughput {ratios['speedup']:.2f}x (target >= {TARGETS['speedup']}), "
            f"BLEU drop {ratios['bleu_drop']:+.2f} (target <= {TARGETS['bleu_drop']}), "
            f"chrF drop {ratios['chrf_drop']:+.2f}"
        )
    return ratios


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="model dir, e.g. models/demo-en-de")
    p.add_argument("--pair", required=True, choices=["en-de", "zh-en"])
    p.add_argument("--limit", type=int, help="first N test sentences")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    p.add_argument("--precisions", default="none,int8", help="comma-separated quantize modes")
    p.add_argument("--json", type=Path, help="also write rows + ratios here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker:
        args.json_out.write_text(json.dumps(run_precision(args)))
        return
    rows = [spawn(args, precision) for precision in args.precisions.split(",")]
    ratios = print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ratios": ratios}, indent=2) + "\n")


if __name__ == "__main__":
    main()
