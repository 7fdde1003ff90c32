"""`batchmt quantize CONFIG`: measure each unit's sensitivity on calibration pairs, choose bit
widths under `quantize.max_size_ratio`, write the quantized model folder, quantization.json
and report.html.

The folder is written last and whole (workers/quantization/folder.py): a failed run leaves
no `out` behind, so a rerun never meets a half-written folder.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from batchmt.jobs.quantize import allocate as alloc
from batchmt.jobs.quantize import evaluate
from batchmt.jobs.quantize.report import render_report
from batchmt.pipeline.spec import ModelSpec, QuantizeJob, load_quantize_job
from batchmt.workers.engines.base import EngineConfig
from batchmt.workers.quantization import QuantizationError, sensitivity
from batchmt.workers.quantization.calibration import causal_batches, seq2seq_batches
from batchmt.workers.quantization.folder import (
    PLAN_FILE,
    PRODUCER,
    checkpoint_tensors,
    compressed_tensors_config,
    quantized_state,
    write_folder,
)
from batchmt.workers.quantization.formats import QuantFormat, parse_format
from batchmt.workers.quantization.rounding import Rounder
from batchmt.workers.quantization.units import Unit, family_units


class QuantizeError(QuantizationError):
    """`batchmt quantize` cannot run as configured (one line, exit 2)."""


def cmd_quantize(config: str, overrides: list[str], *, show_progress: bool) -> int:
    job = load_quantize_job(config, overrides)
    spec = job.quantize
    out = Path(spec.out)
    if out.exists():
        raise QuantizeError(
            f"output folder {out} exists; remove it or set quantize.out to a new folder"
        )
    pairs = read_calibration(spec.calibration, spec.calibration_rows)
    formats = [parse_format(f) for f in spec.formats]
    source = Path(job.model.name_or_path)
    base = checkpoint_tensors(source) if source.is_dir() else {}
    if not base:
        raise QuantizeError(
            f"model.name_or_path {job.model.name_or_path!r} must be a local model folder with "
            "*.safetensors weights (the size budget is measured against them)"
        )
    result = quantize(job, source, pairs, formats, base, show_progress=show_progress)
    print(
        f"quantize: {out} written: size ratio {result['size_ratio']:.4f} of the checkpoint "
        f"(budget {spec.max_size_ratio}); {_plan_summary(result)}; report {out / 'report.html'}"
    )
    return 0


def read_calibration(path: str, rows: int) -> list[tuple[str, str]]:
    if not Path(path).exists():
        raise QuantizeError(
            f"calibration file {path} not found; set quantize.calibration to a Parquet file"
        )
    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        raise QuantizeError(f"calibration file {path} is not readable Parquet ({exc})") from None
    missing = [c for c in ("text", "reference") if c not in schema.names]
    if missing:
        raise QuantizeError(
            f"calibration file {path} has no {' or '.join(repr(c) for c in missing)} column "
            f"(columns: {', '.join(schema.names)}); it needs source `text` and `reference` pairs"
        )
    table = pq.read_table(path, columns=["text", "reference"]).slice(0, rows)
    pairs = [
        (str(t), str(r))
        for t, r in zip(table["text"].to_pylist(), table["reference"].to_pylist())
        if t and r and str(t).strip() and str(r).strip()
    ]
    if len(pairs) < 8:
        raise QuantizeError(
            f"calibration file {path} has {len(pairs)} usable pairs in its first {rows} rows "
            "(text and reference both non-empty); at least 8 are needed"
        )
    return pairs


def calibration_split(
    pairs: list[tuple[str, str]], sensitivity_rows: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(pairs the sensitivity passes and Hessians read, pairs held back for the report)."""
    held = max(1, len(pairs) // 4)
    return pairs[:-held][:sensitivity_rows], pairs[-held:]


def quantize(
    job: QuantizeJob,
    source: Path,
    pairs: list[tuple[str, str]],
    formats: list[QuantFormat],
    base: dict[str, tuple[tuple[int, ...], int]],
    *,
    show_progress: bool,
) -> dict[str, Any]:
    from batchmt.workers.engines.loading import load_engine

    spec = job.quantize
    model_spec = ModelSpec.model_validate(
        {**job.model.model_dump(), "backend": "transformers", "quantization": "none"}
    )
    engine_config = EngineConfig(job.source_lang, job.target_lang, model_spec, job.decoding)
    engine = load_engine(engine_config, str(source), torch.device("cpu"))
    handles = engine.torch_model()
    if handles is None:
        raise QuantizeError(
            f"{source} did not load as a torch model; quantize needs transformers weights"
        )
    model, tokenizer = handles
    family = engine.signature["family"]
    units = family_units(model, family)
    calib, held_out = calibration_split(pairs, spec.sensitivity_rows)
    batches = _batches(family, tokenizer, job, calib)

    measured = list(formats) + (
        [parse_format("int4")] if all(f.name != "int4" for f in formats) else []
    )
    bar = tqdm(
        total=sensitivity.passes(units, measured),
        desc="sensitivity passes",
        unit="pass",
        disable=not show_progress,
        file=sys.stderr,
    )
    reference, sens = sensitivity.reference_pass(model, units, batches)
    rounder = Rounder(model, reference.hessians, spec.rounding)
    sensitivity.measure(
        model, units, measured, batches, reference, sens, rounder, progress=bar.update
    )
    bar.close()

    base_bytes = sum(b for _, b in base.values())
    unit_fp = {u.name: sum(base.get(f"{m}.weight", ((), 0))[1] for m in u.modules) for u in units}
    fixed = base_bytes - sum(unit_fp.values())
    choices = []
    for unit in units:
        kl = sens[unit.name].kl
        options = [alloc.Option(None, 32, unit_fp[unit.name], 0.0)] + [
            alloc.Option(f.name, f.bits, _unit_bytes(unit, f), kl[f.name]) for f in formats
        ]
        sensitive = kl["int4"] >= spec.sensitive_kl
        choices.append(alloc.UnitChoice(unit.name, options, sensitive))
    budget = int(spec.max_size_ratio * base_bytes)
    chosen = alloc.allocate(choices, fixed, budget, base_bytes)
    plan = {name: (parse_format(o.format) if o.format else None) for name, o in chosen.items()}

    table = _evaluate(
        engine, model, units, plan, formats, held_out, job, base_bytes, fixed, choices, rounder
    )
    tensors = quantized_state(model, units, plan, set(base), rounder)
    written = sum(t.numel() * t.element_size() for t in tensors.values())
    ratio = written / base_bytes
    if written > budget:  # the formula and the files disagree: never ship over budget
        raise RuntimeError(f"plan is {ratio:.4f} of the checkpoint, above its budget; a bug")
    layers = []
    sensitive_names = {c.name for c in choices if c.sensitive}
    for unit in units:
        option = chosen[unit.name]
        layers.append(
            {
                "name": unit.name,
                "role": unit.role,
                "modules": unit.modules,
                "aliases": sorted(unit.aliases),
                "format": option.format,
                "sensitivity": option.kl,
                "sensitivity_by_format": sens[unit.name].kl,
                "measured_formats": sens[unit.name].measured,
                "sensitive": unit.name in sensitive_names,
                "bytes": option.nbytes,
                "params": unit.params,
                "activation_abs_p999": sens[unit.name].act_p999,
                "activation_abs_max": sens[unit.name].act_max,
            }
        )
    computed = sorted(
        k
        for k in model.state_dict()
        if k not in base and k not in tensors and not _is_replaced(k, units, plan)
    )
    result: dict[str, Any] = {
        "producer": PRODUCER,
        "source": str(source),
        "family": family,
        "source_lang": job.source_lang,
        "target_lang": job.target_lang,
        "size_ratio": round(ratio, 5),
        "bytes": written,
        "checkpoint_bytes": base_bytes,
        "max_size_ratio": spec.max_size_ratio,
        "formats": [f.name for f in formats],
        "sensitive_kl": spec.sensitive_kl,
        "rounding": spec.rounding,
        "weights_only": "weights quantized, activations in the compute dtype (W<n>A16)",
        "calibration": {
            "path": spec.calibration,
            "pairs": len(pairs),
            "sensitivity_pairs": len(calib),
            "held_out_pairs": len(held_out),
        },
        "layers": layers,
        "computed_tensors": computed,
        "evaluation": table,
    }
    out = Path(spec.out)
    card = _card(result, out)
    write_folder(source, out, tensors, compressed_tensors_config(units, plan), result, card)
    (out / "report.html").write_text(render_report(result), encoding="utf-8")
    return result


def _is_replaced(key: str, units: list[Unit], plan: dict[str, QuantFormat | None]) -> bool:
    """A weight the packed layers stand for (a tied alias of an unquantized matrix is not:
    the architecture ties it again when it is built)."""
    names = {f"{m}.weight" for u in units if plan.get(u.name) for m in [*u.modules, *u.aliases]}
    return key in names


def _variant_bytes(unit: Unit, choice: alloc.UnitChoice, fmt: QuantFormat | None) -> int:
    if fmt is not None:
        return _unit_bytes(unit, fmt)
    return sum(o.nbytes for o in choice.options if o.format is None)


def _unit_bytes(unit: Unit, fmt: QuantFormat) -> int:
    return sum(fmt.nbytes(shape) for shape in unit.shapes)


def _batches(
    family: str, tokenizer: Any, job: QuantizeJob, pairs: list[tuple[str, str]]
) -> list[Any]:
    if family == "causal":
        from batchmt.workers.engines.hymt.prompts import PromptBuilder

        prompts = PromptBuilder(job.source_lang, job.target_lang)
        return causal_batches(
            tokenizer, [prompts.plain(s) for s, _ in pairs], [r for _, r in pairs], 16
        )
    return seq2seq_batches(tokenizer, pairs, 32)


def _evaluate(
    engine: Any,
    model: Any,
    units: list[Unit],
    plan: dict[str, QuantFormat | None],
    formats: list[QuantFormat],
    held_out: list[tuple[str, str]],
    job: QuantizeJob,
    base_bytes: int,
    fixed: int,
    choices: list[alloc.UnitChoice],
    rounder: Rounder,
) -> list[dict[str, Any]]:
    """fp (the checkpoint), each uniform format, and the plan on the held-out pairs."""
    texts = [s for s, _ in held_out]
    refs = [r for _, r in held_out]
    variants: list[tuple[str, dict[str, QuantFormat | None]]] = [("checkpoint", {})]
    variants += [(f"{f.name} everywhere", {u.name: f for u in units}) for f in formats]
    variants.append(("plan", plan))
    rows = []
    for name, variant in variants:
        nbytes = fixed + sum(
            _variant_bytes(u, c, variant.get(u.name)) for u, c in zip(units, choices)
        )
        start = time.perf_counter()
        with evaluate.quantized_plan(model, units, variant, rounder):
            hyps = evaluate.translate(engine, texts)
        seconds = time.perf_counter() - start
        scores = evaluate.score(hyps, refs, job.target_lang)
        rows.append(
            {
                "variant": name,
                "size_ratio": round(nbytes / base_bytes, 4),
                "bleu": scores.bleu,
                "chrf": scores.chrf,
                "seconds": round(seconds, 1),
            }
        )
    return rows


def _plan_summary(result: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for layer in result["layers"]:
        key = layer["format"] or "unquantized"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} unit(s) {k}" for k, n in sorted(counts.items()))


def _card(result: dict[str, Any], out: Path) -> str:
    rows = "\n".join(
        f"| {r['variant']} | {r['size_ratio']:.4f} | {r['bleu']:.2f} | {r['chrf']:.2f} |"
        for r in result["evaluation"]
    )
    return (
        f"# {out.name}: {result['source']} quantized by `batchmt quantize`\n\n"
        f"Weights only, per-unit formats ({_plan_summary(result)}, rounded by "
        f"{result['rounding']}), "
        f"{result['size_ratio']:.4f} of the checkpoint's weight bytes. Layer formats, "
        f"sensitivities and bytes: `{PLAN_FILE}`; `config.json` holds them as a compressed-tensors "
        "`quantization_config` (pack-quantized). `batchmt run` takes this folder as "
        "`model.name_or_path` (transformers backend, chosen automatically).\n\n"
        f"Held-back calibration pairs ({result['calibration']['held_out_pairs']}):\n\n"
        "| variant | size ratio | BLEU | chrF |\n|---|---|---|---|\n" + rows + "\n"
    )
