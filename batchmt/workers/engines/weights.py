"""Weights that load but cannot translate: a NaN or Inf in any tensor.

A checkpoint whose every weight is NaN (header intact) passes every structural check and
loads; the transformers backend then writes empty translations and CTranslate2 repeats
one token, both "ok" to anything downstream. Each replica reads every floating-point tensor
of a local checkpoint once before it loads the engine (memory-mapped, one tensor at a time)
and refuses the model, naming the first bad tensor.
"""

from __future__ import annotations

from pathlib import Path

import torch

from batchmt.workers.engines.base import EngineLoadError


def _bad(tensor: torch.Tensor) -> str | None:
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return None
    if bool(torch.isnan(tensor).any()):
        return "NaN"
    if bool(torch.isinf(tensor).any()):
        return "Inf"
    return None


def _refuse(name: str, file: str, tensor: str, what: str) -> EngineLoadError:
    return EngineLoadError(
        f"model {name!r} has {what} values in tensor {tensor!r} ({file}): the weights are "
        "broken; re-download or re-export the model"
    )


def check_finite_weights(folder: str | Path, name: str) -> None:
    """Raise EngineLoadError naming the first tensor with a NaN or Inf in `folder`'s
    *.safetensors files (else its PyTorch *.bin files); a folder without them passes."""
    root = Path(folder)
    files = sorted(root.glob("*.safetensors"))
    if files:
        from safetensors import safe_open

        for path in files:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                    what = _bad(f.get_tensor(key))
                    if what:
                        raise _refuse(name, path.name, key, what)
        return
    for path in sorted(root.glob("pytorch_model*.bin")):
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        for key, tensor in state.items():
            what = _bad(tensor) if isinstance(tensor, torch.Tensor) else None
            if what:
                raise _refuse(name, path.name, key, what)
