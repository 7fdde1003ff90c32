"""The issue #21 race: raw vLLM `LLM.generate`, `batchmt run` with `model.backend: vllm`, and
`batchmt run` with `model.backend: transformers`, on the same rows and bounds, from one script.

The model is a random-weight HunYuanDenseV1 (HY-MT1.5's architecture) built here: by default
hidden 512, 8 layers, 8 heads x 64, 2 KV heads (about 24 M parameters, CPU-sized); on a GPU
`--hy-mt-1.8b` gives it HY-MT1.5-1.8B's published dimensions (hidden 2048, 32 layers, 16
heads x 128, 4 KV heads, intermediate 6144, vocabulary 120,818). Its tokenizer is a
byte-level BPE trained here on the rows' language. Rows: Multi30k val English sentences to
German, HY-MT's plain prompt in the tokenizer's chat template; greedy; each row's output
bound `source tokens + 32` (max_length_a 1, max_length_b 32), the same `max_tokens` per row
in the raw run. The jobs: one replica, QE fallback off (raw generate has none), no glossary.

Raw `LLM.generate` runs in a fresh process of its own per round, as a user's script does,
twice: with glibc malloc as it starts, and with the replica's malloc settings
(workers/process/allocator.py), so the job is also compared like for like. Each round
runs raw, raw with the tuned malloc, the vllm job and the transformers job in turn (this
machine's speed drifts by tens of percent over minutes); the ratios come from the medians.
vLLM compiles the model's graph on both sides (its default and `model.vllm_compile`'s);
`--eager` races both without it.

Printed: wall seconds per run (the jobs' translate phase: replicas loaded, until the last
shard is back), per round the raw process's `LLM(...)` build and the vllm replica's load
(what graph compile costs at each start), output tokens/s of the raw run, and the ratios
the issue asks for: vllm job / raw generate (target >= 0.9) and vllm job / transformers job
(target >= 2.5).

    .venv-vllm/bin/python -m benchmarks.vllm_race --rows 256
    .venv-vllm/bin/python -m benchmarks.vllm_race --rows 256 --rounds 3 --skip-transformers
    .venv-vllm/bin/python -m benchmarks.vllm_race --rows 256 --compile-ab 4
    .venv-vllm/bin/python -m benchmarks.vllm_race --device cuda --hy-mt-1.8b --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
MULTI30K = REPO / ".." / "shared" / "data" / "multi30k" / "val.en"
HY_MT_18B = {  # HY-MT1.5-1.8B's published shape (its HunYuanDenseV1ForCausalLM modules)
    "hidden_size": 2048,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "intermediate_size": 6144,
    "vocab_size": 120818,
}
SMALL = {
    "hidden_size": 512,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "intermediate_size": 1536,
    "vocab_size": 4000,
}
BOUND_A, BOUND_B, MAX_NEW = 1.0, 32, 256


def build_model(out: Path, shape: dict[str, int], lines: list[str], dtype: str) -> Path:
    """A random-weight HunYuanDenseV1 with a BPE tokenizer and HY-MT's chat markers."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        HunYuanDenseV1Config,
        HunYuanDenseV1ForCausalLM,
        PreTrainedTokenizerFast,
    )

    from tests.workers.tiny_causal import BOS, CHAT_TEMPLATE, EOS, PAD, SEP, SPECIAL

    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(shape["vocab_size"], 8000),
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    prompt = "Translate the following segment into German, without additional explanation."
    bpe.train_from_iterator([*lines, prompt] * 2, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[SEP, SPECIAL[4], SPECIAL[5]],
        model_max_length=2048,
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(str(out))
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL}
    config = HunYuanDenseV1Config(
        **{**shape, "vocab_size": max(shape["vocab_size"], len(tokenizer))},
        max_position_embeddings=2048,
        pad_token_id=ids[PAD],
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = HunYuanDenseV1ForCausalLM(config).to(getattr(torch, dtype)).eval()
    model.save_pretrained(str(out))
    GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD]
    ).save_pretrained(str(out))
    return out


def raw_generate(
    model: Path, lines: list[str], dtype: str, device: str, allocator: str, eager: bool
) -> dict[str, Any]:
    """`LLM.generate` as a user writes it, in a fresh process of its own (as a user's script
    runs): the same prompt ids and per-row max_tokens. `allocator`: "default" leaves glibc
    malloc as it starts; "tuned" applies the replica's settings (workers/process/allocator.py), so
    the job can also be compared like for like."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        asked = {"model": str(model), "lines": lines, "dtype": dtype, "device": device}
        json.dump({**asked, "eager": eager}, f)
    command = [sys.executable, "-m", "benchmarks.vllm_race", "--raw-only", f.name]
    if allocator == "tuned":
        command.append("--tuned-allocator")
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    Path(f.name).unlink()
    if done.returncode != 0:
        raise RuntimeError(f"raw LLM.generate failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]), allocator=allocator)


def _raw_in_this_process(request: Path, tuned_allocator: bool) -> dict[str, Any]:
    from vllm import LLM, SamplingParams

    from batchmt.pipeline.spec import ModelSpec
    from batchmt.workers.engines.base import EngineConfig
    from batchmt.workers.engines.hymt.chat import ChatPrompts
    from batchmt.workers.process.allocator import keep_freed_memory

    asked = json.loads(request.read_text())
    model, lines, dtype, device = (
        Path(asked["model"]),
        asked["lines"],
        asked["dtype"],
        asked["device"],
    )
    if tuned_allocator:
        keep_freed_memory()
    # The replica's settings (workers/engines/vllm_backend/settings.py): in-process engine,
    # the same KV-cache size on CPU (vLLM's CPU default asks for 90 % of the host's RAM).
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if device == "cpu":
        from batchmt.workers.engines.vllm_backend.settings import cpu_kv_gib

        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cpu_kv_gib()))
    config = EngineConfig("en", "de", ModelSpec(name_or_path=str(model)))
    chat = ChatPrompts(config, str(model), _hf_config(model))
    prompts = chat.ids([chat.prompts.plain(t) for t in lines])
    bounds = [min(MAX_NEW, int(BOUND_A * n + BOUND_B)) for n in chat.count_tokens(lines)]
    # vLLM's default compiles the graph; --eager races both sides without it.
    extra: dict[str, Any] = {"enforce_eager": True} if asked["eager"] else {}
    if os.environ.get("VLLM_RACE_QUANTIZATION"):  # e.g. fp8: vLLM quantizes the weights
        extra["quantization"] = os.environ["VLLM_RACE_QUANTIZATION"]
    built = time.perf_counter()
    llm = LLM(model=str(model), dtype=dtype, seed=0, max_model_len=2048, **extra)
    build_seconds = time.perf_counter() - built  # the graph compile is paid here
    eos = chat.tokenizer.eos_token_id
    params = [SamplingParams(max_tokens=b, temperature=0.0, stop_token_ids=[eos]) for b in bounds]
    started = time.perf_counter()
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"seconds": seconds, "output_tokens": tokens, "llm_build_seconds": build_seconds}


def compile_ab(model: Path, lines: list[str], dtype: str, device: str, n: int) -> dict[str, Any]:
    """Raw `generate` seconds and `LLM(...)` build seconds, eager and compiled, alternating."""
    runs: dict[str, list[dict[str, Any]]] = {"eager": [], "compile": []}
    for _ in range(n):
        for eager in (True, False):
            run = raw_generate(model, lines, dtype, device, "tuned", eager)
            runs["eager" if eager else "compile"].append(run)
    report: dict[str, Any] = {"rows": len(lines), "device": device}
    for name, done in runs.items():
        report[name] = {
            "generate_seconds": [r["seconds"] for r in done],
            "llm_build_seconds": [r["llm_build_seconds"] for r in done],
            "generate_median": _median(done, "seconds")["seconds"],
        }
    report["eager_over_compile"] = (
        report["eager"]["generate_median"] / report["compile"]["generate_median"]
    )
    return report


def _hf_config(model: Path) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(model))


def job(
    model: Path, data: Path, backend: str, dtype: str, workdir: Path, eager: bool = False
) -> dict[str, Any]:
    """`batchmt run` through the Python API (what the CLI calls): translate phase seconds."""
    import batchmt

    config = {
        "job_name": f"race-{backend}",
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": str(data)},
        "output": {"path": str(workdir / f"out-{backend}")},
        "model": {
            "name_or_path": str(model),
            "backend": backend,
            "dtype": dtype,
            "vllm_compile": not eager,
        },
        "decoding": {
            "num_beams": 1,
            "max_new_tokens": MAX_NEW,
            "max_length_a": BOUND_A,
            "max_length_b": BOUND_B,
        },
        "formats": {"mode": "text"},
        "quality": {"fallback": {"enabled": False}, "sample_per_shard": 0},
        "workers": {"num_workers": 1, "num_cpus": os.cpu_count() or 1},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{backend}.json"
    path.write_text(json.dumps(config))
    outcome = batchmt.run(str(path))
    return {
        "translate_seconds": outcome.timings.translate,
        "replica_load_seconds": outcome.timings.pool_start,
        "rows_ok": outcome.summary["ok"],
        "backend": outcome.summary.get("backend"),
    }


def _translations(output: Path) -> dict[str, str]:
    import batchmt

    table = batchmt.read_output(str(output))
    return dict(zip(table.column("id").to_pylist(), table.column("translation").to_pylist()))


def _median(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose `key` is the median (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: float(r[key]))
    return ordered[(len(ordered) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default=None, help="float32 on CPU, bfloat16 on GPU")
    parser.add_argument("--hy-mt-1.8b", dest="big", action="store_true")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument(
        "--eager",
        action="store_true",
        help="vLLM without its graph compile, raw and job alike (model.vllm_compile: false)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate raw and vllm-job runs this many times; ratios from the medians "
        "(a busy machine moves a single run's time by 2-3x)",
    )
    parser.add_argument(
        "--compile-ab",
        type=int,
        default=0,
        metavar="N",
        help="instead of the race: raw LLM.generate with the replica's malloc, eager and "
        "compiled in alternating fresh processes, N times each (what compile alone buys)",
    )
    parser.add_argument("--raw-only", type=Path, help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--tuned-allocator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_only:
        print(json.dumps(_raw_in_this_process(args.raw_only, args.tuned_allocator)))
        return
    dtype = args.dtype or ("float32" if args.device == "cpu" else "bfloat16")
    lines = [t.strip() for t in MULTI30K.read_text(encoding="utf-8").splitlines() if t.strip()]
    lines = lines[: args.rows]
    work = Path(tempfile.mkdtemp(prefix="vllm-race-"))
    model = build_model(work / "model", HY_MT_18B if args.big else SMALL, lines, dtype)
    data = work / "in.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(len(lines))], "text": lines}), data)
    if args.compile_ab:
        print(json.dumps(compile_ab(model, lines, dtype, args.device, args.compile_ab), indent=2))
        return
    raws, tuned, jobs, hf_jobs = [], [], [], []
    for round_ in range(max(1, args.rounds)):
        raws.append(raw_generate(model, lines, dtype, args.device, "default", args.eager))
        tuned.append(raw_generate(model, lines, dtype, args.device, "tuned", args.eager))
        jobs.append(job(model, data, "vllm", dtype, work / f"round{round_}", args.eager))
        if not args.skip_transformers:
            hf_jobs.append(job(model, data, "transformers", dtype, work / f"round{round_}"))
    raw = _median(raws, "seconds")
    raw_tuned = _median(tuned, "seconds")
    vllm_job = _median(jobs, "translate_seconds")
    rounds = [
        {
            "raw_seconds": r["seconds"],
            "raw_tuned_allocator_seconds": t["seconds"],
            "vllm_job_seconds": j["translate_seconds"],
            "vllm_job_vs_raw": r["seconds"] / j["translate_seconds"],
            # `LLM(...)` in the fresh raw process: compile's price per start with vLLM's
            # defaults (its AOT cache misses on this model: every start compiles).
            "raw_llm_build_seconds": r["llm_build_seconds"],
            "vllm_replica_load_seconds": j["replica_load_seconds"],
        }
        for r, t, j in zip(raws, tuned, jobs, strict=True)
    ]
    report: dict[str, Any] = {
        "rows": len(lines),
        "device": args.device,
        "dtype": dtype,
        "vllm_compile": not args.eager,
        "shape": HY_MT_18B if args.big else SMALL,
        "raw_generate": raw,
        "raw_output_tokens_per_s": raw["output_tokens"] / raw["seconds"],
        "raw_generate_tuned_allocator": raw_tuned,
        "job_vllm": vllm_job,
        # The ratio: the job against `LLM.generate` as a user's script runs it.
        "vllm_job_vs_raw": raw["seconds"] / vllm_job["translate_seconds"],
        "vllm_job_vs_raw_per_round_median": _median(rounds, "vllm_job_vs_raw")["vllm_job_vs_raw"],
        # Like for like: raw with the replica's malloc settings too.
        "vllm_job_vs_raw_tuned_allocator": raw_tuned["seconds"] / vllm_job["translate_seconds"],
        "rounds": rounds,
    }
    if hf_jobs:
        hf_job = _median(hf_jobs, "translate_seconds")
        report["job_transformers"] = hf_job
        report["vllm_job_vs_transformers_job"] = (
            hf_job["translate_seconds"] / vllm_job["translate_seconds"]
        )
        report["transformers_job_seconds_per_round"] = [j["translate_seconds"] for j in hf_jobs]
        # Row by row against the reference implementation: greedy on both, so every row
        # should come out the same (a near-tie in float rounding may flip one).
        mine = _translations(work / "round0" / "out-vllm")
        theirs = _translations(work / "round0" / "out-transformers")
        report["rows_identical_vllm_vs_transformers"] = sum(mine[k] == theirs.get(k) for k in mine)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
