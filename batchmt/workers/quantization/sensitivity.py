"""Per-unit sensitivity: how far the model's output distribution moves (KL divergence from
the full-precision model, nats per reference token, teacher-forced on calibration pairs) when
that unit alone is quantized to a format; additive over units is the allocation's working
assumption.

Every format of 3 bits or fewer is measured directly, one forward pass per unit and format:
the first version measured int2 only and scaled the others by the Hessian-weighted weight
error, and that ranked attention against feed-forward units wrongly at int3 (the issue's
hand plan beat it by 0.9 BLEU). Wider formats (int4, int8) move the output an order of
magnitude less; their KL is still scaled from the widest measured format by the error
tr(dW H dW^T), H = X^T X from the calibration inputs (both second order in the
perturbation, and closest to the measured point there). Embedding units are measured in
every format. A pass over 384 demo pairs is ~2 s on a quiet 2-core CPU.

The values measured are the ones the folder stores: `rounding.Rounder` computes each unit's
integers once (GPTQ by default, from the Hessians collected here).

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
from batchmt.workers.quantization.formats import QuantFormat, dequantize
from batchmt.workers.quantization.rounding import Rounder
from batchmt.workers.quantization.units import Unit, weight_of

# Values sampled per unit and batch for the percentile (torch.quantile's input limit is 16M).
_SAMPLE = 65536


@dataclass
class UnitSensitivity:
    kl: dict[str, float] = field(default_factory=dict)  # format name -> nats per token
    measured: list[str] = field(default_factory=list)  # formats measured; others scaled
    act_p999: float = 0.0
    act_max: float = 0.0


@dataclass
class Reference:
    """The full-precision pass: log-probs per batch (fp16), each unit's input Gram matrix,
    and the encoder's output per batch (encoder-decoder), which a decoder unit's pass reuses
    (it cannot change it: a third less work per pass on the demo models)."""

    logprobs: list[torch.Tensor]
    hessians: dict[str, torch.Tensor]
    encoded: list[Any]


def measured_formats(unit: Unit, formats: Sequence[QuantFormat]) -> list[QuantFormat]:
    """The formats whose KL is measured by a pass (the rest are scaled from the widest)."""
    if unit.role == "embedding":
        return list(formats)
    narrow = [f for f in formats if f.bits <= 3]
    return narrow or [min(formats, key=lambda f: (f.bits, -f.group_size))]


def passes(units: Sequence[Unit], formats: Sequence[QuantFormat]) -> int:
    """Forward passes `measure` makes (for the progress bar)."""
    return sum(len(measured_formats(unit, formats)) for unit in units)


@contextmanager
def quantized_unit(model: nn.Module, unit: Unit, fmt: QuantFormat, rounder: Rounder) -> Any:
    """`unit`'s weights replaced by the values `rounder` stores for them, restored on exit."""
    stored = rounder.values(unit, fmt)  # before the swap: they are computed from the weights
    saved = []
    with torch.no_grad():
        for name, (q, scale) in zip(unit.modules, stored):
            weight = weight_of(model, name)
            saved.append((weight, weight.detach().clone()))
            weight.copy_(dequantize(q, scale, fmt, weight.dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            for weight, original in saved:
                weight.copy_(original)


def _masked_logprobs(model: nn.Module, batch: Batch, encoded: Any = None) -> torch.Tensor:
    extra = {"encoder_outputs": encoded} if encoded is not None else {}
    logits = model(**batch.inputs, **extra).logits
    return torch.log_softmax(logits[batch.mask].float(), dim=-1)


def _encode(model: nn.Module, batch: Batch) -> Any:
    """The encoder's output for an encoder-decoder batch (None for decoder-only)."""
    if "labels" not in batch.inputs or not hasattr(model, "get_encoder"):
        return None
    get_encoder: Any = model.get_encoder  # a transformers method; Module's typing says Tensor
    return get_encoder()(
        input_ids=batch.inputs["input_ids"], attention_mask=batch.inputs["attention_mask"]
    )


def _decoder_side(unit: Unit) -> bool:
    """Quantizing this unit leaves the encoder's output as it was (its layers are the
    decoder's; a token embedding is read by the encoder too)."""
    return unit.role != "embedding" and all(".encoder." not in f".{m}" for m in unit.modules)


def reference_pass(
    model: nn.Module, units: Sequence[Unit], batches: Sequence[Batch]
) -> tuple[Reference, dict[str, UnitSensitivity]]:
    """The full-precision outputs and Hessians, and each unit's activation ranges."""
    results = {unit.name: UnitSensitivity() for unit in units}
    with torch.inference_mode():
        logprobs, hessians, encoded = _reference_pass(model, units, batches, results)
    return Reference(logprobs, hessians, encoded), results


def measure(
    model: nn.Module,
    units: Sequence[Unit],
    formats: Sequence[QuantFormat],
    batches: Sequence[Batch],
    reference: Reference,
    results: dict[str, UnitSensitivity],
    rounder: Rounder,
    progress: Callable[[int], None] | None = None,
) -> dict[str, UnitSensitivity]:
    """KL per unit and format (`passes(units, formats)` passes over `batches`)."""
    with torch.inference_mode():
        for unit in units:
            measured = measured_formats(unit, formats)
            kl = results[unit.name].kl
            for fmt in measured:
                kl[fmt.name] = _kl(model, unit, fmt, rounder, batches, reference)
                if progress is not None:
                    progress(1)
            results[unit.name].measured = [f.name for f in measured]
            anchor = max(measured, key=lambda f: (f.bits, -f.group_size))
            base = _weight_error(model, unit, anchor, rounder, reference.hessians)
            for fmt in formats:
                if fmt.name in kl:
                    continue
                error = _weight_error(model, unit, fmt, rounder, reference.hessians)
                kl[fmt.name] = kl[anchor.name] * error / base if base > 0 else 0.0
    return results


def _kl(
    model: nn.Module,
    unit: Unit,
    fmt: QuantFormat,
    rounder: Rounder,
    batches: Sequence[Batch],
    reference: Reference,
) -> float:
    total, tokens = 0.0, 0
    reuse = _decoder_side(unit)
    with quantized_unit(model, unit, fmt, rounder):
        for batch, ref, encoded in zip(batches, reference.logprobs, reference.encoded):
            q = _masked_logprobs(model, batch, encoded if reuse else None)
            p = ref.float()
            total += float((p.exp() * (p - q)).sum())
            tokens += int(p.shape[0])
    return max(total / max(tokens, 1), 0.0)


def _weight_error(
    model: nn.Module,
    unit: Unit,
    fmt: QuantFormat,
    rounder: Rounder,
    hessians: dict[str, torch.Tensor],
) -> float:
    """sum over the unit's layers of tr(dW H dW^T): the summed squared change of the layer's
    outputs on the calibration inputs (plain squared error without a Hessian)."""
    total = 0.0
    for name, (q, scale) in zip(unit.modules, rounder.values(unit, fmt)):
        weight = weight_of(model, name).detach().float()
        delta = (dequantize(q, scale, fmt, torch.float32) - weight).double()
        hessian = hessians.get(unit.name)
        total += float(
            ((delta @ hessian) * delta).sum() if hessian is not None else (delta**2).sum()
        )
    return total


def _reference_pass(
    model: nn.Module,
    units: Sequence[Unit],
    batches: Sequence[Batch],
    results: dict[str, UnitSensitivity],
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor], list[Any]]:
    """Full-precision log-probs per batch (kept in fp16), each unit's input Gram matrix X^T X
    over real (unpadded) tokens (its Hessian for a squared output error) and input ranges.
    An embedding unit tied to the output head gets the head's input Gram matrix."""
    samples: dict[str, list[torch.Tensor]] = {u.name: [] for u in units}
    hessians: dict[str, torch.Tensor] = {}
    current: dict[str, torch.Tensor] = {}  # the batch's token masks, by side
    unit_roles = {u.name: u.role for u in units}
    handles = []
    for unit in units:
        if unit.role == "embedding":
            heads = [a for a in unit.aliases if a.rsplit(".", 1)[-1] == "lm_head"]
            if not heads:
                continue  # its input is token ids
            reads = heads[0]
        else:
            # Fused q/k/v and gate/up read the same input: the first layer's hook serves all.
            reads = unit.modules[0]
        side = _side(reads)

        def hook(
            _m: nn.Module, args: tuple[Any, ...], key: str = unit.name, side: str = side
        ) -> None:
            x = args[0].detach()
            mask = current.get(side)
            if mask is not None and tuple(mask.shape) == tuple(x.shape[:-1]):
                x = x[mask]
            x = x.reshape(-1, x.shape[-1]).double()
            gram = x.T @ x
            hessians[key] = hessians[key] + gram if key in hessians else gram
            if unit_roles[key] == "embedding":
                return  # the head's input is not the embedding's activation
            flat = x.abs().flatten().float()
            if flat.numel() > _SAMPLE:
                flat = flat[torch.randint(flat.numel(), (_SAMPLE,), generator=_GEN)]
            samples[key].append(flat)

        handles.append(model.get_submodule(reads).register_forward_pre_hook(hook))
    reference = []
    encoded = []
    try:
        for batch in batches:
            current.clear()
            current.update(_token_masks(batch))
            encoded.append(_encode(model, batch))
            reference.append(_masked_logprobs(model, batch, encoded[-1]).half())
    finally:
        for handle in handles:
            handle.remove()
    for name, parts in samples.items():
        if parts:
            values = torch.cat(parts)
            results[name].act_p999 = float(torch.quantile(values[:16_000_000], 0.999))
            results[name].act_max = float(values.max())
    return reference, hessians, encoded


def _side(module_name: str) -> str:
    """Which token mask a layer's input rows follow: the encoder's (its layers, and the
    cross-attention keys and values, which read the encoder's output) or the decoder's."""
    if ".encoder." in f".{module_name}" or module_name.endswith(
        ("encoder_attn.k_proj", "encoder_attn.v_proj")
    ):
        return "encoder"
    return "decoder"


def _token_masks(batch: Batch) -> dict[str, torch.Tensor]:
    attention = batch.inputs.get("attention_mask")
    if "labels" in batch.inputs:  # encoder-decoder: the decoder reads the reference
        masks = {"decoder": batch.mask}
        if attention is not None:
            masks["encoder"] = attention.bool()
        return masks
    # decoder-only: every real token of prompt and answer passes every layer
    return {"decoder": attention.bool()} if attention is not None else {}


_GEN = torch.Generator().manual_seed(0)
