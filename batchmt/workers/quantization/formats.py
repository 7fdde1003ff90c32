"""Weight formats: symmetric round-to-nearest integers with one fp16 scale per group.

Storage follows compressed-tensors' "pack-quantized" layout, so a decoder-only folder in int8 /
int4 is what vLLM and transformers' compressed-tensors integration load: `weight_packed`
(int32, values offset to unsigned and packed densely along the input dimension, 32 / bits
values per word for 2, 4, 8 bits; 3-bit values straddle words), `weight_scale` (one per
group of `group_size` inputs, or per output row for channel strategy) and `weight_shape`.
When compressed-tensors is installed its own pack / unpack run; otherwise the pure-torch
functions below, which produce the same words (tests/workers/test_quantization_formats.py).
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass

import torch

from batchmt.workers.quantization import QuantizationError

# Names the spec accepts: int8 | int4 | int3 | int2, optionally "-g<group size>" or "-ch"
# (one scale per output row).
_FORMAT = re.compile(r"^int([2348])(?:-(g(\d+)|ch))?$")
# Defaults: int8 per output channel (the error of 8 bits is far below a group's gain);
# sub-8-bit formats in groups of 32 inputs (what the uniform numbers measured).
_DEFAULT_GROUP = {8: 0, 4: 32, 3: 32, 2: 32}
SCALE_DTYPE = torch.float16


class FormatError(QuantizationError):
    """A format name the quantizer does not know."""


@dataclass(frozen=True)
class QuantFormat:
    bits: int
    group_size: int  # 0 = one scale per output channel (row)

    @property
    def name(self) -> str:
        default = _DEFAULT_GROUP[self.bits]
        if self.group_size == default:
            return f"int{self.bits}"
        return (
            f"int{self.bits}-ch" if self.group_size == 0 else f"int{self.bits}-g{self.group_size}"
        )

    def groups(self, in_features: int) -> int:
        return 1 if self.group_size == 0 else math.ceil(in_features / self.group_size)

    def packed_words(self, in_features: int) -> int:
        """int32 words per row (dense bit stream, rows padded to 32-value blocks)."""
        return math.ceil(in_features * self.bits / 32)

    def nbytes(self, shape: tuple[int, int]) -> int:
        """Bytes on disk and resident: packed words + fp16 scales + the int64 shape pair."""
        rows, cols = shape
        return rows * self.packed_words(cols) * 4 + rows * self.groups(cols) * 2 + 16

    def scheme(self) -> dict[str, object]:
        """compressed-tensors QuantizationArgs for these weights."""
        return {
            "num_bits": self.bits,
            "type": "int",
            "symmetric": True,
            "strategy": "channel" if self.group_size == 0 else "group",
            "group_size": None if self.group_size == 0 else self.group_size,
            "observer": "minmax",
            "dynamic": False,
            "actorder": None,
            "block_structure": None,
        }


def parse_format(name: str) -> QuantFormat:
    match = _FORMAT.match(name.strip().lower())
    if not match:
        raise FormatError(
            f"unknown quantization format {name!r}; use int8, int4, int3 or int2, optionally "
            "with a group size (int4-g64) or per-channel scales (int4-ch)"
        )
    bits = int(match.group(1))
    if match.group(2) == "ch":
        group = 0
    elif match.group(3):
        group = int(match.group(3))
        if group < 8 or group % 8:
            raise FormatError(f"format {name!r}: the group size must be a multiple of 8")
    else:
        group = _DEFAULT_GROUP[bits]
    return QuantFormat(bits, group)


def quantize_weight(weight: torch.Tensor, fmt: QuantFormat) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values in [-2^(b-1), 2^(b-1)-1], fp16 scales [rows, groups]): round to nearest,
    symmetric, the scale from each group's absolute maximum."""
    w = weight.detach().float()
    rows, cols = w.shape
    qmax = 2 ** (fmt.bits - 1) - 1
    qmin = -(2 ** (fmt.bits - 1))
    group = cols if fmt.group_size == 0 else fmt.group_size
    padded = math.ceil(cols / group) * group
    wg = torch.nn.functional.pad(w, (0, padded - cols)).reshape(rows, -1, group)
    # A 2-bit grid {-2, -1, 0, 1}: the max maps to the positive end, as in compressed-tensors.
    scale = (wg.abs().amax(dim=2) / qmax).clamp_min(1e-8).to(SCALE_DTYPE)
    q = torch.round(wg / scale.float()[:, :, None]).clamp_(qmin, qmax).to(torch.int8)
    return q.reshape(rows, padded)[:, :cols].contiguous(), scale


def dequantize(
    q: torch.Tensor, scale: torch.Tensor, fmt: QuantFormat, dtype: torch.dtype
) -> torch.Tensor:
    rows, cols = q.shape
    group = cols if fmt.group_size == 0 else fmt.group_size
    padded = math.ceil(cols / group) * group
    qg = torch.nn.functional.pad(q, (0, padded - cols)).reshape(rows, -1, group)
    w = qg.to(dtype) * scale.to(dtype)[:, :, None]
    return w.reshape(rows, padded)[:, :cols]


def fake_quantize(weight: torch.Tensor, fmt: QuantFormat) -> torch.Tensor:
    """The weight as the quantized model computes with it (same dtype as given)."""
    q, scale = quantize_weight(weight, fmt)
    return dequantize(q, scale, fmt, weight.dtype)


def _library_packing() -> bool:
    return importlib.util.find_spec("compressed_tensors") is not None


def pack(q: torch.Tensor, bits: int) -> torch.Tensor:
    """int8 values -> int32 words, compressed-tensors' dense layout along the input dim."""
    if _library_packing():
        from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32

        return pack_to_int32(q, bits)
    rows, cols = q.shape
    value = q.to(torch.int64) + (1 << (bits - 1))  # unsigned
    padded = math.ceil(cols / 32) * 32
    value = torch.nn.functional.pad(value, (0, padded - cols)).reshape(-1, 32)
    # Value i of a 32-value block starts at bit i*bits of the block's `bits` words.
    start = torch.arange(32, dtype=torch.int64) * bits
    words = torch.zeros(value.shape[0], bits + 1, dtype=torch.int64)
    words.scatter_add_(1, (start // 32).expand_as(value), (value << (start % 32)) & 0xFFFFFFFF)
    words.scatter_add_(1, (start // 32 + 1).expand_as(value), value >> (32 - start % 32))
    words = words[:, :bits].reshape(rows, -1)[:, : math.ceil(cols * bits / 32)]
    # Two's complement int32 view of the unsigned 32-bit words.
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32).contiguous()


def unpack(words: torch.Tensor, bits: int, cols: int) -> torch.Tensor:
    """int32 words -> int8 values (rows, cols); the inverse of `pack`."""
    if _library_packing():
        from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

        return unpack_from_int32(words, bits, torch.Size((words.shape[0], cols)))
    rows, n = words.shape
    blocks = math.ceil(n / bits)
    w = torch.nn.functional.pad(words.to(torch.int64) & 0xFFFFFFFF, (0, blocks * bits - n + 1))
    w = torch.cat(
        [
            w[:, : blocks * bits].reshape(rows, blocks, bits),
            torch.zeros(rows, blocks, 1, dtype=torch.int64),
        ],
        dim=2,
    )
    start = torch.arange(32, dtype=torch.int64) * bits
    lo = w[:, :, start // 32] >> (start % 32)
    hi = w[:, :, start // 32 + 1] << (32 - start % 32)
    value = (lo | hi) & ((1 << bits) - 1)
    value = value.reshape(rows, blocks * 32)[:, :cols]
    return (value - (1 << (bits - 1))).to(torch.int8)
