"""How a weight matrix becomes integers and scales in a format: the values the folder stores.

Plain round-to-nearest with the group's maximum on the top level (the first version) lost too
much at 2-3 bits: 0.655 relative output error at int2 on the demo's fc1 where torchao's clipped
scale reached 0.473. Two field-standard refinements, both activation-aware through the layer's
input Gram matrix H = XᵀX from the calibration pass:

- `clipped`: per group and row, the scale is searched over a grid of clip ratios of the
  group's maximum and the one with the least error weighted by diag(H) (how much each input
  column moves the output; AWQ / llama.cpp's weighted search) is kept.
- `gptq`: GPTQ (Frantar et al. 2022): columns are rounded one at a time and each rounding's
  output error is compensated on the columns not yet rounded, through the inverse Hessian;
  each group's scale is searched as above when the rounding reaches it. The stored values
  stay a plain grouped symmetric format (no reordering), so any loader of the layout reads them.

Without H (an embedding's lookup side) `clipped` weights every column alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from batchmt.workers.quantization.formats import SCALE_DTYPE, QuantFormat, quantize_weight
from batchmt.workers.quantization.units import Unit, weight_of

ROUNDINGS = ("gptq", "clip", "rtn")

# Clip ratios searched (fraction of the group's max that lands on the top level). Below 0.35
# the top levels of int2 would clip nearly half of a group.
_RATIOS = torch.linspace(0.35, 1.0, 27)
_DAMP = 0.01  # GPTQ's dampening, a fraction of the mean diagonal of H
_BLOCK = 128


def _levels(fmt: QuantFormat) -> tuple[int, int]:
    return -(2 ** (fmt.bits - 1)), 2 ** (fmt.bits - 1) - 1


def search_scale(
    w: torch.Tensor, fmt: QuantFormat, importance: torch.Tensor | None
) -> torch.Tensor:
    """Scales [rows] for one group of columns w [rows, g]: the grid clip ratio with the least
    importance-weighted squared rounding error, rounded to the stored dtype first so the
    error is that of the scale the folder keeps."""
    qmin, qmax = _levels(fmt)
    amax = w.abs().amax(dim=1).clamp_min(1e-8)  # [rows]
    cand = (amax[:, None] * _RATIOS[None, :] / qmax).to(SCALE_DTYPE).float().clamp_min(1e-8)
    q = torch.round(w[:, None, :] / cand[:, :, None]).clamp_(qmin, qmax)
    err = (q * cand[:, :, None] - w[:, None, :]) ** 2  # [rows, ratios, g]
    if importance is not None:
        err = err * importance[None, None, :]
    best = err.sum(dim=2).argmin(dim=1)
    return cand.gather(1, best[:, None])[:, 0]


def clipped(
    weight: torch.Tensor, fmt: QuantFormat, importance: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values, fp16 scales [rows, groups]) with searched scales, rounded to nearest."""
    w = weight.detach().float()
    rows, cols = w.shape
    qmin, qmax = _levels(fmt)
    group = cols if fmt.group_size == 0 else fmt.group_size
    q = torch.empty(rows, cols, dtype=torch.int8)
    scales = torch.empty(rows, math.ceil(cols / group), dtype=SCALE_DTYPE)
    for g, start in enumerate(range(0, cols, group)):
        part = w[:, start : start + group]
        imp = importance[start : start + group].float() if importance is not None else None
        scale = search_scale(part, fmt, imp)
        scales[:, g] = scale.to(SCALE_DTYPE)
        q[:, start : start + group] = (
            torch.round(part / scale[:, None]).clamp_(qmin, qmax).to(torch.int8)
        )
    return q, scales


def gptq(
    weight: torch.Tensor, hessian: torch.Tensor, fmt: QuantFormat
) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values, fp16 scales) minimising ||(W - Q) X||² column by column (GPTQ)."""
    w = weight.detach().float().clone()
    rows, cols = w.shape
    qmin, qmax = _levels(fmt)
    group = cols if fmt.group_size == 0 else fmt.group_size
    h = hessian.detach().double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    importance = torch.diag(h).float()
    h += _DAMP * torch.mean(torch.diag(h)) * torch.eye(cols, dtype=h.dtype)
    # Upper Cholesky factor of H⁻¹: row i holds the compensation of column i on the rest.
    hinv = torch.linalg.cholesky(
        torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True
    ).float()
    q = torch.empty(rows, cols, dtype=torch.int8)
    scales = torch.empty(rows, math.ceil(cols / group), dtype=SCALE_DTYPE)
    scale = torch.ones(rows)
    block = max(_BLOCK // group, 1) * group if group < cols else cols
    for b1 in range(0, cols, block):
        b2 = min(b1 + block, cols)
        w1 = w[:, b1:b2].clone()
        err1 = torch.zeros_like(w1)
        h1 = hinv[b1:b2, b1:b2]
        for i in range(b2 - b1):
            col = b1 + i
            if col % group == 0:
                end = min(i + group, b2 - b1)
                scale = search_scale(w1[:, i:end], fmt, importance[col : b1 + end])
                scales[:, col // group] = scale.to(SCALE_DTYPE)
            column = w1[:, i]
            qc = torch.round(column / scale).clamp_(qmin, qmax)
            q[:, col] = qc.to(torch.int8)
            err = (column - qc * scale) / h1[i, i]
            w1[:, i:] -= err[:, None] * h1[i, i:][None, :]
            err1[:, i] = err
        w[:, b2:] -= err1 @ hinv[b1:b2, b2:]
    return q, scales


Stored = tuple[torch.Tensor, torch.Tensor]  # int8 values, fp16 scales


class Rounder:
    """Each unit's stored values in each format, computed once and reused: the sensitivity
    passes, the report's variants and the written folder all see the same integers.

    `hessians` maps a unit name to the Gram matrix of its layers' input (an embedding unit:
    that of the tied output head, whose logits its rounding moves). A unit without one is
    rounded by `clipped` with every column weighted alike. Values are computed from the
    model's weights when first asked for, so a unit must not be swapped for its quantized
    values at that moment (`sensitivity.quantized_unit` asks before it swaps).
    """

    def __init__(
        self, model: nn.Module, hessians: Mapping[str, torch.Tensor], method: str = "gptq"
    ) -> None:
        if method not in ROUNDINGS:
            raise ValueError(f"unknown rounding {method!r}; use one of {', '.join(ROUNDINGS)}")
        self.model = model
        self.hessians = hessians
        self.method = method
        self._cache: dict[tuple[str, str], list[Stored]] = {}

    def values(self, unit: Unit, fmt: QuantFormat) -> list[Stored]:
        """(values, scales) per module of `unit`, in `unit.modules` order."""
        key = (unit.name, fmt.name)
        if key not in self._cache:
            hessian = self.hessians.get(unit.name)
            self._cache[key] = [
                self._round(weight_of(self.model, name), fmt, hessian) for name in unit.modules
            ]
        return self._cache[key]

    def _round(
        self, weight: torch.Tensor, fmt: QuantFormat, hessian: torch.Tensor | None
    ) -> Stored:
        if self.method == "rtn":
            return quantize_weight(weight, fmt)
        if self.method == "gptq" and hessian is not None:
            return gptq(weight, hessian, fmt)
        importance = torch.diag(hessian).float() if hessian is not None else None
        return clipped(weight, fmt, importance)
