"""Per-unit sensitivity: how far the model's output distribution moves (KL divergence from
the full-precision model, nats per reference token, teacher-forced on calibration pairs) when
that unit alone is quantized to a format; additive over units is the allocation's working
assumption.

One forward pass per unit and format was too slow (29 s a pass for 384 pairs on the demo
model on this shared 2-core machine: 196 passes, 95 minutes). So each Linear unit gets one
measured pass, in the lowest-bit format (where the signal is largest), and the other formats
are scaled from it by the layer's Hessian-weighted weight error, tr(dW H dW^T) with
H = X^T X from the calibration inputs: both KL and that error are second order in the
perturbation, so their ratio carries over between formats of one layer. Embedding units
(a lookup and, tied, the output head) are measured in every format.

Activation ranges (99.9th percentile of |input|, and the maximum) are recorded per unit from
the full-precision pass: the formats here quantize weights only (activations stay in the
compute dtype), so the ranges are reported for the plan's reader and for an A8 format, not
used to scale anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from batchmt.workers.quantization.calibration import Batch
from batchmt.workers.quantization.formats import QuantFormat, fake_quantize
from batchmt.workers.quantization.units import Unit, weight_of

# Values sampled per unit and batch for the percentile (torch.quantile's input limit is 16M).
_SAMPLE = 65536


@dataclass
class UnitSensitivity:
    kl: dict[str, float] = field(default_factory=dict)  # format name -> nats per token
    measured: str = ""  # the format whose KL was measured; the others are scaled from it
    act_p999: float = 0.0
    act_max: float = 0.0


def passes(units: Sequence[Unit], formats: Sequence[QuantFormat]) -> int:
    """Forward passes `measure` makes (for the progress bar)."""
    return sum(len(formats) if unit.role == "embedding" else 1 for unit in units)


@contextmanager
def quantized_unit(model: nn.Module, unit: Unit, fmt: QuantFormat) -> Any:
    """`unit`'s weights replaced by their quantized values, restored on exit."""
    saved = []
    with torch.no_grad():
        for name in unit.modules:
            weight = weight_of(model, name)
            saved.append((weight, weight.detach().clone()))
            weight.copy_(fake_quantize(weight, fmt))
    try:
        yield
    finally:
        with torch.no_grad():
            for weight, original in saved:
                weight.copy_(original)


def _masked_logprobs(model: nn.Module, batch: Batch) -> torch.Tensor:
    logits = model(**batch.inputs).logits
    return torch.log_softmax(logits[batch.mask].float(), dim=-1)


def measure(
    model: nn.Module,
    units: Sequence[Unit],
    formats: Sequence[QuantFormat],
    batches: Sequence[Batch],
    progress: Callable[[int], None] | None = None,
) -> dict[str, UnitSensitivity]:
    """KL per unit and format (`passes(units, formats)` passes over `batches`)."""
    results = {unit.name: UnitSensitivity() for unit in units}
    lowest = min(formats, key=lambda f: (f.bits, -f.group_size if f.group_size else -1 << 30))
    with torch.inference_mode():
        reference, hessians = _reference_pass(model, units, batches, results)
        for unit in units:
            measured = list(formats) if unit.role == "embedding" else [lowest]
            for fmt in measured:
                results[unit.name].kl[fmt.name] = _kl(model, unit, fmt, batches, reference)
                if progress is not None:
                    progress(1)
            results[unit.name].measured = lowest.name
            if unit.role != "embedding":
                errors = {f.name: _weight_error(model, unit, f, hessians) for f in formats}
                base = results[unit.name].kl[lowest.name]
                for fmt in formats:
                    ratio = (
                        errors[fmt.name] / errors[lowest.name] if errors[lowest.name] > 0 else 0.0
                    )
                    results[unit.name].kl[fmt.name] = base * ratio
    return results


def _kl(
    model: nn.Module,
    unit: Unit,
    fmt: QuantFormat,
    batches: Sequence[Batch],
    reference: list[torch.Tensor],
) -> float:
    total, tokens = 0.0, 0
    with quantized_unit(model, unit, fmt):
        for batch, ref in zip(batches, reference):
            q = _masked_logprobs(model, batch)
            p = ref.float()
            total += float((p.exp() * (p - q)).sum())
            tokens += int(p.shape[0])
    return max(total / max(tokens, 1), 0.0)


def _weight_error(
    model: nn.Module, unit: Unit, fmt: QuantFormat, hessians: dict[str, torch.Tensor]
) -> float:
    """sum over the unit's layers of tr(dW H dW^T): the summed squared change of the layer's
    outputs on the calibration inputs."""
    total = 0.0
    for name in unit.modules:
        weight = weight_of(model, name).detach().float()
        delta = (fake_quantize(weight, fmt).float() - weight).double()
        total += float(((delta @ hessians[unit.name]) * delta).sum())
    return total


def _reference_pass(
    model: nn.Module,
    units: Sequence[Unit],
    batches: Sequence[Batch],
    results: dict[str, UnitSensitivity],
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Full-precision log-probs per batch (kept in fp16), each Linear unit's input Gram
    matrix X^T X (its Hessian for a squared output error) and input ranges."""
    samples: dict[str, list[torch.Tensor]] = {u.name: [] for u in units}
    hessians: dict[str, torch.Tensor] = {}
    handles = []
    for unit in units:
        if unit.role == "embedding":
            continue  # its input is token ids
        # Fused q/k/v and gate/up read the same input: the first layer's hook serves all.
        module = model.get_submodule(unit.modules[0])

        def hook(_m: nn.Module, args: tuple[Any, ...], key: str = unit.name) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            gram = x.T @ x
            hessians[key] = hessians[key] + gram if key in hessians else gram
            flat = x.abs().flatten().float()
            if flat.numel() > _SAMPLE:
                flat = flat[torch.randint(flat.numel(), (_SAMPLE,), generator=_GEN)]
            samples[key].append(flat)

        handles.append(module.register_forward_pre_hook(hook))
    try:
        reference = [_masked_logprobs(model, batch).half() for batch in batches]
    finally:
        for handle in handles:
            handle.remove()
    for name, parts in samples.items():
        if parts:
            values = torch.cat(parts)
            results[name].act_p999 = float(torch.quantile(values[:16_000_000], 0.999))
            results[name].act_max = float(values.max())
    return reference, hessians


_GEN = torch.Generator().manual_seed(0)
