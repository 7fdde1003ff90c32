"""The weights' compute dtype, as `model.dtype` asks and the device allows."""

from __future__ import annotations

import torch

from batchmt.pipeline.spec import ModelSpec
from batchmt.workers.engines.base import EngineLoadError


def requested_dtype(model: ModelSpec, device: torch.device) -> torch.dtype | None:
    """The dtype `model.dtype` names, or None for "auto" (each family picks its own default).

    float16 on CPU is refused up front: most CPU kernels lack it and the rest are slow.
    """
    if model.dtype == "auto":
        return None
    dtype: torch.dtype = getattr(torch, model.dtype)
    if device.type == "cpu" and dtype == torch.float16:
        raise EngineLoadError(
            "model.dtype=float16 is slow or unsupported on CPU; use float32 or bfloat16 there"
        )
    return dtype
