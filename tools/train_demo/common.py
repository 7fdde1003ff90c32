"""What every stage shares: the log line, the torch device, the recipe arguments."""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

# Arguments that define the recipe (stored in eval.json, checked on --resume).
RECIPE_KEYS = [
    "pair",
    "vocab_size",
    "coverage",
    "d_model",
    "layers",
    "heads",
    "ffn",
    "max_positions",
    "dropout",
    "attention_dropout",
    "label_smoothing",
    "lr",
    "warmup",
    "max_tokens",
    "max_len",
    "clip_norm",
    "average",
    "seed",
    "limit_train",
    "amp",
]


def recipe_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in RECIPE_KEYS}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
