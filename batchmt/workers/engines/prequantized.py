"""Decoder-only checkpoints released already quantized (HY-MT FP8 / GPTQ-Int4).

INT8 made here from full-precision weights is `quantize.py`'s one path for both families;
this module only checks and adapts the configs of checkpoints quantized by their authors.
"""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

import torch

from batchmt.workers.engines.base import EngineLoadError

# quant_method values (config.json quantization_config) each pre-quantized mode accepts.
_PREQUANTIZED_METHODS = {"fp8": ("compressed-tensors", "fp8", "fbgemm_fp8"), "gptq-int4": ("gptq",)}
# Python packages transformers needs to run each quant_method, with the pip name.
_BACKEND_PACKAGES = {
    "compressed-tensors": ("compressed_tensors", "compressed-tensors"),
    "gptq": ("gptqmodel", "gptqmodel"),
}


def checkpoint_quantization(config: Any) -> dict[str, Any] | None:
    """The checkpoint's own quantization_config as a plain dict, or None if it has none."""
    found = getattr(config, "quantization_config", None)
    if found is None:
        return None
    return dict(found) if isinstance(found, dict) else dict(found.to_dict())


def prequantized_config(config: Any, mode: str, device: torch.device, model_name: str) -> Any:
    """The config to load with, after checking `mode` against what the checkpoint holds.

    fp8 / gptq-int4 load checkpoints released quantized; they never quantize on the fly
    (calibration belongs to the model's authors). none / int8 need unquantized weights.
    HY-MT's FP8 release names its skip list "ignored_layers", which compressed-tensors reads
    as "ignore": the rename happens on a copy of the config object, never in the user's files.
    """
    found = checkpoint_quantization(config)
    method = str(found.get("quant_method", "")) if found else ""
    if mode in ("none", "int8"):
        if found:
            wanted = next((m for m, ms in _PREQUANTIZED_METHODS.items() if method in ms), None)
            hint = f"set model.quantization={wanted}" if wanted else "use an unquantized checkpoint"
            raise EngineLoadError(
                f"model {model_name!r} is already quantized ({method or 'unknown method'}); "
                f"model.quantization={mode} needs unquantized weights: {hint}"
            )
        return config
    if not found:
        raise EngineLoadError(
            f"model.quantization={mode} loads a checkpoint released in that format (e.g. "
            f"tencent/HY-MT1.5-1.8B-{'FP8' if mode == 'fp8' else 'GPTQ-Int4'}); {model_name!r} "
            "has no quantization_config in its config.json. Point model.name_or_path at the "
            "quantized release, or use model.quantization=int8 (quantized at load) or none"
        )
    if method not in _PREQUANTIZED_METHODS[mode] or (
        mode == "gptq-int4" and found.get("bits") != 4
    ):
        raise EngineLoadError(
            f"model.quantization={mode} does not match {model_name!r}, which is quantized with "
            f"{method!r} (bits={found.get('bits')}); set model.quantization to match the checkpoint"
        )
    if device.type != "cuda":
        raise EngineLoadError(
            f"model.quantization={mode} runs on a CUDA GPU only (this replica is on "
            f"{device.type}); on CPU use an unquantized checkpoint with model.quantization=int8"
        )
    module, package = _BACKEND_PACKAGES.get(method, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise EngineLoadError(
            f"model {model_name!r} is quantized with {method}; install it in the worker image: "
            f"pip install {package}"
        )
    patched = copy.deepcopy(config)
    if "ignored_layers" in found and "ignore" not in found:
        found["ignore"] = found.pop("ignored_layers")
    patched.quantization_config = found
    return patched


def without_quantization(config: Any) -> Any:
    """A copy of `config` describing the bare architecture (for a meta-device size check)."""
    bare = copy.deepcopy(config)
    if hasattr(bare, "quantization_config"):
        delattr(bare, "quantization_config")
    return bare
