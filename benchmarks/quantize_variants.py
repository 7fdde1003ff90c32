"""Speed, memory and BLEU of each variant of a `batchmt quantize` output, in one process:
the checkpoint (transformers backend), every uniform format, and the plan, each loaded from
its folder through the worker's engine and run over the worker's shard loop (beam 4).

    python -m benchmarks.quantize_variants --plan /tmp/ende-q010 --pair en-de --limit 300

Uniform folders are written next to the plan's (`<plan>-uniform/<format>`), rounded as the
plan was (its `rounding`, from the Hessians of the same calibration pairs). The plan runs
twice: with its layers packed (dequantized per call) and dequantized once at load
(`model.quantized_layers`). Peak memory is
the process's VmHWM growth while a variant loads and translates (reset between variants via
/proc/self/clear_refs); resident weights are the loaded model's parameter and buffer bytes
(packed layers count their packed words and scales).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path
from typing import Any

import torch

from batchmt.workers.quantization.calibration import seq2seq_batches
from batchmt.workers.quantization.folder import (
    PLAN_FILE,
    checkpoint_tensors,
    compressed_tensors_config,
    quantized_state,
    write_folder,
)
from batchmt.workers.quantization.formats import QuantFormat, parse_format
from batchmt.workers.quantization.rounding import Rounder
from batchmt.workers.quantization.sensitivity import reference_pass
from batchmt.workers.quantization.units import family_units


def uniform_folders(plan_dir: Path) -> dict[str, Path]:
    """One folder per uniform format of the plan's format list (written once, then reused)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from batchmt.jobs.quantize.command import calibration_split, read_calibration

    plan = json.loads((plan_dir / PLAN_FILE).read_text())
    source = Path(plan["source"])
    root = plan_dir.with_name(plan_dir.name + "-uniform")
    folders = {f"{name} everywhere": root / name for name in plan["formats"]}
    if all(out.exists() for out in folders.values()):
        return folders
    model = AutoModelForSeq2SeqLM.from_pretrained(str(source)).eval()
    units = family_units(model, plan["family"])
    base = checkpoint_tensors(source)
    calibration = plan["calibration"]
    pairs = read_calibration(calibration["path"], calibration["pairs"])
    calib, _ = calibration_split(pairs, calibration["sensitivity_pairs"])
    batches = seq2seq_batches(AutoTokenizer.from_pretrained(str(source)), calib, 32)
    reference, _ = reference_pass(model, units, batches)
    rounder = Rounder(model, reference.hessians, plan.get("rounding", "rtn"))
    for name in plan["formats"]:
        out = root / name
        if out.exists():
            continue
        fmt = parse_format(name)
        variant: dict[str, QuantFormat | None] = {u.name: fmt for u in units}
        tensors = quantized_state(model, units, variant, set(base), rounder)
        layers = [
            {"name": u.name, "modules": u.modules, "aliases": sorted(u.aliases), "format": name}
            for u in units
        ]
        written = sum(t.numel() * t.element_size() for t in tensors.values())
        meta = {
            "producer": plan["producer"],
            "source": str(source),
            "family": plan["family"],
            "size_ratio": written / sum(b for _, b in base.values()),
            "layers": layers,
            "computed_tensors": plan["computed_tensors"],
        }
        root.mkdir(exist_ok=True)
        card = f"{name} everywhere (benchmarks/quantize_variants.py)\n"
        write_folder(source, out, tensors, compressed_tensors_config(units, variant), meta, card)
    return folders


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure(
    name: str,
    folder: Path,
    args: argparse.Namespace,
    data: tuple[list[str], list[str]],
    quantized_layers: str = "packed",
) -> dict[str, Any]:
    from batchmt.workers.engines.quantize import weight_bytes
    from benchmarks.common import demo_engine
    from tools.train_demo.evaluate import score

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    before = _vm("VmRSS")
    src, tgt = args.pair.split("-")
    engine, translate = demo_engine(
        str(folder),
        backend="transformers",
        device=args.device,
        source_lang=src,
        target_lang=tgt,
        quantized_layers=quantized_layers,
    )
    sources, refs = data
    translate(sources[:16])  # warm-up
    start = time.perf_counter()
    hyps = translate(sources)
    seconds = time.perf_counter() - start
    tokens = sum(len(ids) for ids in engine.tokenizer(text_target=hyps)["input_ids"])
    model = engine.torch_model()[0]
    ratio = (
        json.loads((folder / PLAN_FILE).read_text())["size_ratio"]
        if (folder / PLAN_FILE).exists()
        else 1.0
    )
    row = {
        "variant": name,
        "size_ratio": round(ratio, 4),
        "resident_weights_mib": round(weight_bytes(model) / 2**20, 2),
        "peak_rss_growth_mib": round((_vm("VmHWM") - before) / 2**20, 1),
        "tokens_per_s": round(tokens / seconds, 1),
        **score(hyps, refs),
    }
    del engine, translate, model
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--pair", default="en-de")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    # A subset of: checkpoint, "<format> everywhere", plan, "plan dequantized at load".
    parser.add_argument("--only", default="", help="comma-separated variant names")
    # Rounds over the variants, interleaved (load on a shared machine drifts within minutes).
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from tools.train_demo.data import load_splits

    splits = load_splits(args.pair, args.data_dir)
    test_name, (sources, refs) = next(iter(splits.tests.items()))
    data = (sources[: args.limit], refs[: args.limit])
    source = Path(json.loads((args.plan / PLAN_FILE).read_text())["source"])
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    uniform = (
        {} if only and not any("everywhere" in n for n in only) else uniform_folders(args.plan)
    )
    variants: dict[str, tuple[Path, str]] = {
        "checkpoint": (source, "packed"),
        **{name: (folder, "packed") for name, folder in uniform.items()},
        "plan": (args.plan, "packed"),
        "plan dequantized at load": (args.plan, "dequantized"),
    }
    print(f"{test_name}, first {len(data[0])} sentences, beam 4, {args.device}")
    for round_ in range(args.rounds):
        for name, (folder, layers) in variants.items():
            if not only or name in only:
                row = measure(name, folder, args, data, layers)
                print(json.dumps({**row, "round": round_}), flush=True)


if __name__ == "__main__":
    main()
