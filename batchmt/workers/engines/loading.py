"""Pick and load the engine for a model: the family comes from the model's own config, the
runtime from `model.backend`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog
import torch

from batchmt.workers.engines.base import EngineConfig, EngineLoadError, TranslationEngine
from batchmt.workers.quantization.folder import is_quantized_folder

log = structlog.get_logger(__name__)


def quiet_progress_bars() -> None:
    """Loading bars from transformers/hub inside actors only clutter the job's log stream."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_engine(config: EngineConfig, model_path: str, device: torch.device) -> TranslationEngine:
    from batchmt.workers.engines.conversion import is_ct2_folder

    backend = config.model.backend
    if Path(model_path).is_dir() and is_ct2_folder(model_path):
        if backend == "transformers":
            raise EngineLoadError(
                f"{config.model_name!r} is a converted CTranslate2 model, which transformers "
                "cannot load; set model.backend=auto (or ctranslate2), or point "
                "model.name_or_path at the Hugging Face checkpoint"
            )
        return _converted_folder_engine(config, model_path, device)
    if Path(model_path).is_dir() and is_quantized_folder(model_path):
        _check_quantized_folder(config)
        # Packed int layers run on transformers (CTranslate2 has no int2/int3/grouped int4).
        config = replace(config, model=config.model.model_copy(update={"backend": "transformers"}))

    from transformers import AutoConfig

    try:
        hf_config = AutoConfig.from_pretrained(
            model_path,
            trust_remote_code=config.model.trust_remote_code,
            revision=config.model.revision,
        )
    except (OSError, ValueError) as exc:
        raise EngineLoadError(
            f"could not read the config of model {config.model_name!r}: {exc}. "
            "Check model.name_or_path (a local folder, an s3:// URL, or a hub id reachable "
            "from the workers)"
        ) from exc
    if getattr(hf_config, "is_encoder_decoder", False):
        if _wants_ctranslate2(config, hf_config, device):
            return _ctranslate2_engine(config, model_path, hf_config, device)
        from batchmt.workers.engines.seq2seq import Seq2SeqEngine

        return Seq2SeqEngine(config, model_path, device)
    if backend == "ctranslate2":
        raise EngineLoadError(
            f"model.backend=ctranslate2 serves encoder-decoder models; {config.model_name!r} "
            "is decoder-only (set model.backend=auto or transformers)"
        )
    # Decoder-only: an LLM translator driven by prompts (HY-MT1.5 and its templates).
    from batchmt.workers.engines.causal import CausalEngine

    return CausalEngine(config, model_path, device, hf_config=hf_config)


def _check_quantized_folder(config: EngineConfig) -> None:
    if config.model.backend == "ctranslate2":
        raise EngineLoadError(
            f"{config.model_name!r} is a `batchmt quantize` folder (per-layer int formats), "
            "which CTranslate2 cannot load; set model.backend=auto or transformers"
        )
    if config.model.quantization != "none":
        raise EngineLoadError(
            f"{config.model_name!r} is already quantized by `batchmt quantize` (its layers' "
            f"formats are in quantization.json); set model.quantization=none, not "
            f"{config.model.quantization}"
        )


def _checkpoint_dtype(hf_config: Any) -> str | None:
    dtype = getattr(hf_config, "dtype", None) or getattr(hf_config, "torch_dtype", None)
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def _wants_ctranslate2(config: EngineConfig, hf_config: Any, device: torch.device) -> bool:
    """backend=ctranslate2: always (errors say why it cannot). backend=auto: when the family
    is one CTranslate2 converts and the device and dtype are ones it computes in; otherwise
    transformers decodes, as before, and the log says why."""
    from batchmt.workers.engines.conversion import CT2_FAMILIES, compute_type, import_ctranslate2

    backend = config.model.backend
    if backend != "auto":
        return backend == "ctranslate2"
    if hf_config.model_type not in CT2_FAMILIES:
        return False
    try:
        ctranslate2 = import_ctranslate2()
        compute = compute_type(config.model, device.type, _checkpoint_dtype(hf_config))
    except EngineLoadError as exc:
        log.warning("ctranslate2_not_used", model=config.model_name, reason=str(exc))
        return False
    if device.type == "cuda" and ctranslate2.get_cuda_device_count() == 0:
        log.warning("ctranslate2_not_used", reason="this ctranslate2 build sees no CUDA device")
        return False
    supported = ctranslate2.get_supported_compute_types(device.type)
    if compute not in supported:
        log.warning("ctranslate2_not_used", compute_type=compute, supported=sorted(supported))
        return False
    return True


def _local_checkpoint(config: EngineConfig, model_path: str) -> str:
    """A folder to convert: local paths as they are, hub ids through the hub's cache."""
    if Path(model_path).is_dir():
        return model_path
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(model_path, revision=config.model.revision))
    except Exception as exc:  # any hub failure: say which model and what to do
        raise EngineLoadError(
            f"could not fetch {config.model_name!r} to convert it for CTranslate2: {exc}"
        ) from exc


def _ctranslate2_engine(
    config: EngineConfig, model_path: str, hf_config: Any, device: torch.device
) -> TranslationEngine:
    from batchmt.workers.engines.conversion import compute_type, converted_model
    from batchmt.workers.engines.ct2 import CTranslate2Engine

    checkpoint = _local_checkpoint(config, model_path)
    dtype = _checkpoint_dtype(hf_config)
    ct2_path = converted_model(
        checkpoint,
        compute_type(config.model, device.type, dtype),
        model_type=hf_config.model_type,
        max_positions=getattr(hf_config, "max_position_embeddings", None),
        trust_remote_code=config.model.trust_remote_code,
    )
    return CTranslate2Engine(config, ct2_path, device, hf_path=checkpoint, checkpoint_dtype=dtype)


def _converted_folder_engine(
    config: EngineConfig, model_path: str, device: torch.device
) -> TranslationEngine:
    """A CTranslate2 folder given as the model: constrained rows need the checkpoint it came
    from, which only our own cache entries record."""
    from batchmt.workers.engines.conversion import read_meta
    from batchmt.workers.engines.ct2 import CTranslate2Engine

    source = read_meta(model_path).get("source")
    hf_path = source if source and Path(source).is_dir() else None
    return CTranslate2Engine(config, model_path, device, hf_path=hf_path)
