"""Will a causal-LM replica fit its device, and how many KV-cache tokens may a batch hold?

A decoder-only model keeps keys and values for every prompt and generated token of every
live hypothesis, so its batch cost is KV-cache tokens: rows x beams x (prompt + output).
The check runs before any weight is loaded (the architecture is built on the meta device),
so a replica that cannot fit is refused in seconds with numbers, not after an OOM mid-job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from batchmt.workers.engines.base import EngineLoadError

# The HunYuan/Llama-style Linear layers that int8/fp8/int4 replicas hold quantized.
from batchmt.workers.engines.quantize import CAUSAL_LINEARS

# Bytes per weight of a quantized Linear, scales included (per-channel for int8/fp8,
# per group of 128 for GPTQ int4 with fp16 scales and packed zero points).
_QUANTIZED_WEIGHT_BYTES = {"int8": 1.0, "fp8": 1.0, "gptq-int4": 0.5 + 4 / 128}
# CUDA context, cuBLAS workspaces and allocator fragmentation: never available to tensors.
_GPU_RESERVE_BYTES = 1536 * 2**20
# Only this share of what is free is planned for, the rest absorbs estimate error.
_USABLE_SHARE = 0.9


@dataclass(frozen=True)
class Footprint:
    """What one replica needs, in bytes, for a budget of KV-cache tokens."""

    weights: int
    kv_per_token: int
    activations_per_token: int
    fixed: int

    def total(self, kv_tokens: int) -> int:
        return (
            self.weights + self.fixed + kv_tokens * (self.kv_per_token + self.activations_per_token)
        )

    def max_kv_tokens(self, available: int) -> int:
        """The largest batch budget (KV-cache tokens) that fits into `available` bytes."""
        spare = int(available * _USABLE_SHARE) - self.weights - self.fixed
        return max(0, spare // (self.kv_per_token + self.activations_per_token))


def parameter_split(config: Any) -> tuple[int, int]:
    """(parameters in quantizable Linears, all other parameters), without loading weights."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    quantizable = 0
    other = 0
    counted: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in CAUSAL_LINEARS:
            quantizable += module.weight.numel()
            counted.add(id(module.weight))
    # parameters() yields tied tensors (embeddings / lm_head) once.
    for param in model.parameters():
        if id(param) not in counted:
            other += param.numel()
    return quantizable, other


def kv_bytes_per_token(config: Any, dtype_bytes: int) -> int:
    """Keys + values, every layer, one token of one hypothesis."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * dtype_bytes


def footprint(
    config: Any, quantization: str, dtype: torch.dtype, device: torch.device
) -> Footprint:
    quantizable, other = parameter_split(config)
    compute_bytes = torch.empty((), dtype=dtype).element_size()
    per_weight = _QUANTIZED_WEIGHT_BYTES.get(quantization, float(compute_bytes))
    weights = int(quantizable * per_weight + other * compute_bytes)
    # Peak activations of one layer during the prompt pass, per token: the MLP's gate, up
    # and product (3 x intermediate) plus attention in/out (4 x hidden); one layer at a time.
    intermediate = getattr(config, "intermediate_size", 4 * config.hidden_size)
    activations = (3 * intermediate + 4 * config.hidden_size) * compute_bytes
    return Footprint(
        weights=weights,
        kv_per_token=kv_bytes_per_token(config, compute_bytes),
        activations_per_token=activations,
        fixed=_GPU_RESERVE_BYTES if device.type == "cuda" else 0,
    )


def available_bytes(device: torch.device) -> int:
    """Memory free for this replica now: the GPU's free memory, or the host's free RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**62  # unknown (not Linux): do not refuse on a guess


def check_fit(
    need: Footprint,
    kv_tokens: int,
    available: int,
    *,
    model_name: str,
    quantization: str,
    device: torch.device,
) -> int:
    """Refuse a replica that cannot fit; return the largest KV-token budget that does."""
    gib = 2**30
    fits = need.max_kv_tokens(available)
    if need.total(kv_tokens) <= available * _USABLE_SHARE:
        return fits
    where = "GPU" if device.type == "cuda" else "host RAM"
    weights_only = need.weights + need.fixed > available * _USABLE_SHARE
    advice = (
        "use a smaller model or model.quantization=int8 / fp8 / gptq-int4, or a device with "
        "more memory"
        if weights_only
        else f"lower decoding.max_batch_tokens to {fits} or less (or decoding.num_beams), "
        "or quantize (model.quantization=int8 / fp8)"
    )
    raise EngineLoadError(
        f"model {model_name!r} ({quantization}) does not fit one replica's {where}: weights "
        f"{need.weights / gib:.2f} GiB + KV cache and activations for "
        f"decoding.max_batch_tokens={kv_tokens} "
        f"({kv_tokens * (need.kv_per_token + need.activations_per_token) / gib:.2f} GiB) + "
        f"reserve {need.fixed / gib:.2f} GiB > {_USABLE_SHARE:.0%} of "
        f"{available / gib:.2f} GiB free; {advice}"
    )


def seq2seq_weight_bytes(config: Any, dtype: torch.dtype) -> int:
    """An encoder-decoder checkpoint's weights at `dtype`, counted on the meta device (no
    weight is loaded); tied tensors once."""
    from transformers import AutoModelForSeq2SeqLM

    with torch.device("meta"):
        model = AutoModelForSeq2SeqLM.from_config(config)
    element = torch.empty((), dtype=dtype).element_size()
    return sum(p.numel() for p in model.parameters()) * element


def check_models_fit(
    parts: dict[str, int], available: int, *, model_name: str, device: torch.device
) -> None:
    """Refuse a replica whose models' weights (`parts`: what each is, its bytes) do not fit
    together, before any of them loads: a replica that holds a second model (CTranslate2's
    constrained decoder) must have room for both, not find out at its first glossary row."""
    gib = 2**30
    need = sum(parts.values()) + (_GPU_RESERVE_BYTES if device.type == "cuda" else 0)
    if need <= available * _USABLE_SHARE:
        return
    where = "GPU" if device.type == "cuda" else "host RAM"
    listed = " + ".join(f"{name} {size / gib:.2f} GiB" for name, size in parts.items())
    raise EngineLoadError(
        f"model {model_name!r} does not fit one replica's {where}: {listed} > "
        f"{_USABLE_SHARE:.0%} of {available / gib:.2f} GiB free; use a device with more "
        "memory, model.backend=transformers (one model serves free and constrained rows), "
        "or a job without glossary terms"
    )
