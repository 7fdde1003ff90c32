"""How each rounding (`quantize.rounding`: rtn, clip, gptq) does in each uniform format on a
demo model: relative output error of the layers on the calibration inputs, output KL from
the checkpoint, and BLEU / chrF on the held-back val pairs (the split `batchmt quantize`
makes: the first 512 val pairs, the last 128 held back), beam 4, transformers `generate`.

    python -m benchmarks.quantize_rounding --pair en-de --formats int3,int2

The embedding unit (tied to the output head) is rounded with the head's input Hessian for
gptq and clip, as `batchmt quantize` does.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from batchmt.jobs.quantize.command import calibration_split
from batchmt.jobs.quantize.evaluate import quantized_plan, score
from batchmt.workers.quantization.calibration import seq2seq_batches
from batchmt.workers.quantization.formats import QuantFormat, dequantize, parse_format
from batchmt.workers.quantization.rounding import ROUNDINGS, Rounder
from batchmt.workers.quantization.sensitivity import reference_pass
from batchmt.workers.quantization.units import Unit, family_units, weight_of

MODELS = {"en-de": "models/demo-en-de", "zh-en": "models/demo-zh-en"}


def _relative_error(
    model: torch.nn.Module, unit: Unit, fmt: QuantFormat, rounder: Rounder, hessian: torch.Tensor
) -> float:
    """||(W' - W) X|| / ||W X|| over the calibration inputs X (tied embedding: the head's)."""
    num = den = 0.0
    for name, (q, scale) in zip(unit.modules, rounder.values(unit, fmt)):
        w = weight_of(model, name).detach().double()
        delta = dequantize(q, scale, fmt, torch.float32).double() - w
        num += float(((delta @ hessian) * delta).sum())
        den += float(((w @ hessian) * w).sum())
    return (num / den) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pair", default="en-de", choices=sorted(MODELS))
    parser.add_argument("--formats", default="int4,int3,int2")
    parser.add_argument("--roundings", default=",".join(ROUNDINGS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from tools.train_demo.data import load_splits

    target = args.pair.split("-")[1]
    model = AutoModelForSeq2SeqLM.from_pretrained(MODELS[args.pair]).eval()
    tokenizer = AutoTokenizer.from_pretrained(MODELS[args.pair])
    val = load_splits(args.pair, args.data_dir).val
    pairs = list(zip(val[0][:512], val[1][:512]))
    calib, held = calibration_split(pairs, 384)
    batches = seq2seq_batches(tokenizer, calib, 32)
    units = family_units(model, "seq2seq")
    reference, _ = reference_pass(model, units, batches)

    def translate() -> tuple[float, float]:
        hyps: list[str] = []
        with torch.inference_mode():
            for start in range(0, len(held), 32):
                enc = tokenizer(
                    [s for s, _ in held[start : start + 32]], return_tensors="pt", padding=True
                )
                out = model.generate(**enc, num_beams=4, max_new_tokens=128)
                hyps += tokenizer.batch_decode(out, skip_special_tokens=True)
        scores = score(hyps, [r for _, r in held], target)
        return scores.bleu, scores.chrf

    def kl() -> float:
        total, tokens = 0.0, 0
        with torch.inference_mode():
            for batch, ref in zip(batches, reference.logprobs):
                logits = model(**batch.inputs).logits[batch.mask].float()
                p = ref.float()
                total += float((p.exp() * (p - torch.log_softmax(logits, -1))).sum())
                tokens += int(p.shape[0])
        return total / tokens

    bleu, chrf = translate()
    print(json.dumps({"variant": "checkpoint", "bleu": bleu, "chrf": chrf}), flush=True)
    for name in args.formats.split(","):
        fmt = parse_format(name)
        for method in args.roundings.split(","):
            rounder = Rounder(model, reference.hessians, method)
            start = time.perf_counter()
            errors = {
                u.name: _relative_error(model, u, fmt, rounder, reference.hessians[u.name])
                for u in units
                if u.name in reference.hessians
            }
            seconds = time.perf_counter() - start
            with quantized_plan(model, units, {u.name: fmt for u in units}, rounder):
                bleu, chrf = translate()
                divergence = kl()
            linear = [e for n, e in errors.items() if "fc" in n or "proj" in n]
            row = {
                "format": name,
                "rounding": method,
                "rounding_s": round(seconds, 1),
                "mean_rel_error_linear": round(sum(linear) / len(linear), 3),
                "encoder.layers.0.fc1": round(errors["model.encoder.layers.0.fc1"], 3),
                "kl": round(divergence, 4),
                "bleu": bleu,
                "chrf": chrf,
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
