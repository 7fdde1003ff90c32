"""Layers that keep their weights packed in memory and dequantize them per call.

No CPU library has kernels for grouped int2 / int3 (torchao's and quanto's sub-8-bit CPU
paths dequantize too; README "Quantization"), so on every device these layers unpack the
int32 words, scale them and run a float matmul: the resident memory is the packed size,
the time per call grows by one unpack of the layer. `weight` is there for code that reads
a layer's matrix (tied-weight checks, size reports): it is computed, never stored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from batchmt.workers.quantization.formats import QuantFormat, dequantize, unpack


class PackedWeight(nn.Module):
    """One packed matrix: `weight_packed`, `weight_scale`, `weight_shape` (compressed-tensors)."""

    weight_packed: torch.Tensor
    weight_scale: torch.Tensor
    weight_shape: torch.Tensor

    def __init__(
        self,
        packed: torch.Tensor,
        scale: torch.Tensor,
        shape: torch.Tensor,
        fmt: QuantFormat,
        dtype: torch.dtype,
    ) -> None:
        super().__init__()
        self.fmt = fmt
        self.compute_dtype = dtype
        self.register_buffer("weight_packed", packed)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_shape", shape)

    @property
    def weight(self) -> torch.Tensor:
        cols = int(self.weight_shape[1])
        q = unpack(self.weight_packed, self.fmt.bits, cols)
        return dequantize(q, self.weight_scale, self.fmt, self.compute_dtype)

    def share_from(self, other: PackedWeight) -> None:
        """Point at `other`'s buffers (a tied matrix is stored once)."""
        self.weight_packed = other.weight_packed
        self.weight_scale = other.weight_scale
        self.weight_shape = other.weight_shape


class PackedLinear(PackedWeight):
    def __init__(self, *args: object, bias: torch.Tensor | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None
        rows, cols = (int(v) for v in self.weight_shape.tolist())
        self.in_features, self.out_features = cols, rows

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.fmt.name}"

    def unpacked(self, weight: nn.Parameter) -> nn.Linear:
        """The plain layer this one stands for, holding `weight` (its dequantized values)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        linear.weight = weight
        if self.bias is not None:
            linear.bias = self.bias
        return linear.to(weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)


class PackedEmbedding(PackedWeight):
    def __init__(self, *args: object, padding_idx: int | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.padding_idx = padding_idx
        rows, cols = (int(v) for v in self.weight_shape.tolist())
        self.num_embeddings, self.embedding_dim = rows, cols

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self.fmt.name}"

    def unpacked(self, weight: nn.Parameter) -> nn.Embedding:
        """The plain table this one stands for, holding `weight` (its dequantized values)."""
        table = nn.Embedding(
            self.num_embeddings, self.embedding_dim, self.padding_idx, _weight=weight
        )
        table.weight = weight  # the very parameter: tied modules keep sharing it
        return table

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # Only the rows looked up are unpacked (whole 32-value blocks per row).
        rows = torch.unique(ids)
        q = unpack(self.weight_packed[rows], self.fmt.bits, self.embedding_dim)
        table = dequantize(q, self.weight_scale[rows], self.fmt, self.compute_dtype)
        return table[torch.searchsorted(rows, ids)]
