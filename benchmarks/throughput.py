"""The translation paths raced in one process, as ratios, with BLEU beside them (issue #11).

hf:     Hugging Face `generate`, fp32, batches of 32 in input order, beam 4 (the DESIGN's
        reference loop on CPU).
ours/transformers: `workers.translate.translate_texts` (the shard loop) on `Seq2SeqEngine`.
raw ct2: the user's script: tokenizer -> `Translator.translate_batch` (beam 4, batches of 32,
        CTranslate2 sorts them by length) -> detokenize; float32 and int8.
ours/ctranslate2: the shard loop on `CTranslate2Engine`, float32 and int8.
job:    `batchmt run` of `--job-rows` rows (Multi30k train, one replica, `--threads` CPUs);
        its translate seconds come from the job's own timings, against raw ct2 int8 on the
        same rows measured here.

The machine is shared: each of the key runs (raw ct2 int8, ours int8) is repeated `--rounds`
times, interleaved, and the best round counts. Ratios are target tokens/s over raw ct2 int8.

    python -m benchmarks.throughput --limit 1000 --threads 2 --rounds 3 --job-rows 5000
    python -m benchmarks.throughput --device cuda --limit 1000        # see gpu_check.sh
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sacrebleu
import torch

REPO = Path(__file__).resolve().parents[1]
Translate = Callable[[list[str]], list[str]]


@dataclass
class Run:
    name: str
    fn: Translate
    seconds: list[float] = field(default_factory=list)
    hyps: list[str] = field(default_factory=list)


def load_test(data_dir: Path, limit: int, split: str = "test_2016_flickr") -> tuple[list[str], ...]:
    src = (data_dir / "multi30k" / f"{split}.en").read_text(encoding="utf-8").splitlines()
    ref = (data_dir / "multi30k" / f"{split}.de").read_text(encoding="utf-8").splitlines()
    return src[:limit], ref[:limit]


def hf_baseline(model_dir: str, device: torch.device) -> Translate:
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


def raw_ct2(model_dir: str, compute: str, device: torch.device, threads: int) -> Translate:
    """What a user's 50-line script does: convert, tokenize, translate_batch, detokenize."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter
    from transformers import AutoTokenizer

    out = Path(tempfile.mkdtemp(prefix="raw-ct2-")) / compute
    TransformersConverter(model_dir).convert(str(out), quantization=compute, force=True)
    tok = AutoTokenizer.from_pretrained(model_dir)
    translator = ctranslate2.Translator(
        str(out), device=device.type, compute_type=compute, intra_threads=threads
    )

    def run(sources: list[str]) -> list[str]:
        tokens = [tok.convert_ids_to_tokens(ids) for ids in tok(sources)["input_ids"]]
        results = translator.translate_batch(tokens, beam_size=4, max_batch_size=32)
        ids = [tok.convert_tokens_to_ids(r.hypotheses[0]) for r in results]
        return list(tok.batch_decode(ids, skip_special_tokens=True))

    return run


def ours(
    model_dir: str, device: torch.device, quantization: str, backend: str, dtype: str = "auto"
) -> Translate:
    from benchmarks.common import demo_engine

    engine = demo_engine(
        model_dir, quantization=quantization, backend=backend, dtype=dtype, device=device
    )
    return engine[1]


def timed(run: Run, sources: list[str], device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run.hyps = run.fn(sources)
    if device.type == "cuda":
        torch.cuda.synchronize()
    run.seconds.append(time.perf_counter() - start)


def target_tokens(model_dir: str, texts: list[str]) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return sum(len(ids) for ids in tok(text_target=texts)["input_ids"])


def job_race(args: argparse.Namespace, device: torch.device) -> list[str]:
    """`batchmt run` of --job-rows rows vs raw CTranslate2 int8 on the same rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import batchmt

    sources, refs = load_test(args.data_dir, args.job_rows, split="train")
    work = Path(tempfile.mkdtemp(prefix="bench-job-"))
    pq.write_table(
        pa.table({"id": list(range(len(sources))), "text": sources, "reference": refs}),
        work / "rows.parquet",
    )
    config = {
        "job_name": "throughput",
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": str(work / "rows.parquet")},
        "output": {"path": str(work / "out")},
        "model": {"name_or_path": args.model, "quantization": "int8", "backend": "auto"},
        "decoding": {"num_beams": 4},
        "workers": {"num_workers": 1, "num_cpus": args.threads},
    }
    outcome = batchmt.run(config)
    job_seconds = outcome.timings.translate
    table = batchmt.read_output(str(work / "out"))
    translations = [t or "" for t in table.sort_by("id").column("translation").to_pylist()]
    raw = Run("raw ct2 int8", raw_ct2(args.model, "int8", device, args.threads))
    raw.fn(sources[:16])
    for _ in range(max(1, args.rounds - 1)):
        timed(raw, sources, device)
    raw_tps = target_tokens(args.model, raw.hyps) / min(raw.seconds)
    job_tps = target_tokens(args.model, translations) / job_seconds
    return [
        f"\njob: {len(sources)} rows (Multi30k train), 1 replica, {args.threads} CPUs, int8, "
        f"shard size {outcome.shards_total} shard(s)",
        f"{'run':<44} {'seconds':>8} {'tok/s':>8} {'ratio':>6} {'BLEU':>6}",
        f"{'raw ct2 int8 translate_batch':<44} {min(raw.seconds):>8.2f} {raw_tps:>8.0f} "
        f"{1.0:>5.2f}x {_bleu(raw.hyps, refs):>6.2f}",
        f"{'batchmt run, translate phase (job timings)':<44} {job_seconds:>8.2f} "
        f"{job_tps:>8.0f} {job_tps / raw_tps:>5.2f}x {_bleu(translations, refs):>6.2f}",
        f"  (job wall {outcome.wall_seconds:.1f}s: plan {outcome.timings.plan:.1f}s, "
        f"replica load {outcome.timings.pool_start:.1f}s, worker busy "
        f"{outcome.timings.worker_busy:.1f}s)",
    ]


def _bleu(hyps: list[str], refs: list[str]) -> float:
    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "demo-en-de"))
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, best counts")
    parser.add_argument("--job-rows", type=int, default=0, help="also race a batchmt run")
    parser.add_argument("--skip-slow", action="store_true", help="no HF / transformers runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sources, refs = load_test(args.data_dir, args.limit)
    gpu = device.type == "cuda"
    low, high = ("float16", "int8_float16") if gpu else ("float32", "int8")
    # On a GPU the engines take model.dtype=float16 (int8 + float16 = int8_float16).
    dtype = "float16" if gpu else "auto"
    once: list[Run] = []
    if not args.skip_slow:
        once = [
            Run("HF generate fp32, input order, batch 32", hf_baseline(args.model, device)),
            Run("ours, transformers, none", ours(args.model, device, "none", "transformers")),
            Run("ours, transformers, int8", ours(args.model, device, "int8", "transformers")),
        ]
    raced = [
        Run(f"raw ct2 {low} translate_batch", raw_ct2(args.model, low, device, args.threads)),
        Run(f"ours, ctranslate2, {low}", ours(args.model, device, "none", "ctranslate2", dtype)),
        Run(f"raw ct2 {high} translate_batch", raw_ct2(args.model, high, device, args.threads)),
        Run(f"ours, ctranslate2, {high}", ours(args.model, device, "int8", "ctranslate2", dtype)),
    ]
    for run in [*once, *raced]:
        run.fn(sources[:16])  # warm-up: allocator, kernels, lazy init
    for run in once:
        timed(run, sources, device)
        print(f"  {run.name}: {run.seconds[-1]:.1f}s", flush=True)
    for k in range(args.rounds):
        for run in raced:
            timed(run, sources, device)
            print(f"  round {k + 1} {run.name}: {run.seconds[-1]:.1f}s", flush=True)
    reference = raced[2]
    tokens = {r.name: target_tokens(args.model, r.hyps) for r in [*once, *raced]}
    ref_tps = tokens[reference.name] / min(reference.seconds)
    lines = [
        f"\n{len(sources)} sentences, beam 4, device {device}, threads {args.threads}, "
        f"best of {args.rounds} interleaved rounds for the ct2 runs; ratio vs {reference.name}",
        f"{'run':<44} {'seconds':>8} {'tok/s':>8} {'ratio':>6} {'BLEU':>6}",
    ]
    for run in [*once, *raced]:
        tps = tokens[run.name] / min(run.seconds)
        lines.append(
            f"{run.name:<44} {min(run.seconds):>8.2f} {tps:>8.0f} {tps / ref_tps:>5.2f}x "
            f"{_bleu(run.hyps, refs):>6.2f}"
        )
    print("\n".join(lines), flush=True)
    if args.job_rows:
        print("\n".join(job_race(args, device)), flush=True)


if __name__ == "__main__":
    main()
