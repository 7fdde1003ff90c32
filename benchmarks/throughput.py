"""The worker's translation path against the DESIGN's reference loop, in one process.

baseline: Hugging Face `generate`, fp32, batches of 32 in input order, beam 4 (the DESIGN's
          reference point on CPU).
ours:     `workers.translate.translate_texts` through `Seq2SeqEngine`: length-sorted
          token-budget batches, output bounded by input length; fp32/fp16 and int8.
Printed as ratios against the baseline run in the same process, with BLEU beside them.

    python -m benchmarks.throughput --limit 500 --threads 2            # CPU
    python -m benchmarks.throughput --device cuda --limit 1000         # one GPU
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import sacrebleu
import torch

REPO = Path(__file__).resolve().parents[1]


def load_test(data_dir: Path, limit: int) -> tuple[list[str], list[str]]:
    src = (data_dir / "multi30k" / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()
    ref = (data_dir / "multi30k" / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    return src[:limit], ref[:limit]


def hf_baseline(model_dir: str, device: torch.device) -> Callable[[list[str]], list[str]]:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).to(device).eval()

    @torch.inference_mode()
    def run(sources: list[str]) -> list[str]:
        out: list[str] = []
        for i in range(0, len(sources), 32):
            batch = tok(sources[i : i + 32], return_tensors="pt", padding=True).to(device)
            ids = model.generate(**batch, num_beams=4, max_new_tokens=256, max_length=None)
            out += tok.batch_decode(ids, skip_special_tokens=True)
        return out

    return run


def ours(
    model_dir: str, device: torch.device, quantization: str
) -> Callable[[list[str]], list[str]]:
    from benchmarks.common import demo_engine

    return demo_engine(model_dir, quantization=quantization, device=device)[1]


def measure(
    name: str,
    fn: Callable[[list[str]], list[str]],
    sources: list[str],
    refs: list[str],
    device: torch.device,
) -> dict[str, float | str]:
    fn(sources[:16])  # warm-up: allocator, kernels, lazy init
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    hyps = fn(sources)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    words = sum(len(h.split()) for h in hyps)
    return {
        "name": name,
        "seconds": seconds,
        "words_per_s": words / seconds,
        "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "demo-en-de"))
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sources, refs = load_test(args.data_dir, args.limit)
    runs = [
        measure(
            "HF generate fp32, input order, batch 32",
            hf_baseline(args.model, device),
            sources,
            refs,
            device,
        ),
        measure("batchmt engine, none", ours(args.model, device, "none"), sources, refs, device),
        measure("batchmt engine, int8", ours(args.model, device, "int8"), sources, refs, device),
    ]
    base = float(runs[0]["words_per_s"])
    print(f"\n{len(sources)} sentences, beam 4, device {device}, threads {args.threads}")
    print(f"{'run':<42} {'seconds':>8} {'words/s':>9} {'ratio':>6} {'BLEU':>6}")
    for run in runs:
        print(
            f"{run['name']:<42} {run['seconds']:>8.2f} {run['words_per_s']:>9.1f} "
            f"{float(run['words_per_s']) / base:>5.2f}x {run['bleu']:>6.2f}"
        )


if __name__ == "__main__":
    main()
