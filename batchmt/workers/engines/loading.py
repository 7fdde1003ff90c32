"""Pick and load the engine for a model: the family comes from the model's own config, the
runtime from `model.backend`."""

from __future__ import annotations

import gc
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog
import torch

from batchmt.workers.engines.base import EngineConfig, EngineLoadError, TranslationEngine
from batchmt.workers.engines.vllm_backend.runtime import vllm_serves
from batchmt.workers.engines.vllm_backend.settings import packed_folder_problem
from batchmt.workers.engines.weights import check_finite_weights
from batchmt.workers.quantization.folder import is_quantized_folder

log = structlog.get_logger(__name__)


def quiet_progress_bars() -> None:
    """Loading bars from transformers/hub inside actors only clutter the job's log stream,
    and so does Marian's tokenizer advice to install sacremoses, which it never uses for
    detokenizing SentencePiece output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")


def load_engine(config: EngineConfig, model_path: str, device: torch.device) -> TranslationEngine:
    """The engine for `model_path`, or EngineLoadError (one line: the job exits 2, and a
    job that just claimed its output leaves it unclaimed). Any failure to load counts: a
    garbage tokenizer file or a tensor of the wrong shape is a model problem, not a shard's.
    """
    try:
        if Path(model_path).is_dir():
            check_finite_weights(model_path, config.model_name)
        engine = _load_engine(config, model_path, device)
    except EngineLoadError:
        raise
    except Exception as exc:  # whatever the libraries raise: one line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = f"{type(exc).__name__}: {lines[0] if lines else ''}"[:400]
        raise EngineLoadError(
            f"model {config.model_name!r} could not be loaded ({reason}); check "
            "model.name_or_path points at a complete, uncorrupted model"
        ) from exc
    _freeze_replica()
    return engine


def _freeze_replica() -> None:
    """The replica's objects (modules, tokenizers, vocabularies: ~380k Python objects for
    the demo model with its constrained decoder) live as long as it does: frozen, the
    collector's full passes no longer walk them. Left in, the first full pass fell in the
    replica's first shard (0.23 s of the 463 override rows' 4.5 s). What an earlier load
    froze is unfrozen first, so an engine that was replaced can still be collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _load_engine(config: EngineConfig, model_path: str, device: torch.device) -> TranslationEngine:
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
    packed = Path(model_path).is_dir() and is_quantized_folder(model_path)
    if packed:
        _check_quantized_folder(config)
        # Packed int layers run on transformers (CTranslate2 has no int2/int3/grouped int4);
        # a decoder-only folder may still go to vLLM, decided below from `backend`.
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
        if backend == "vllm":
            raise EngineLoadError(
                f"model.backend=vllm serves decoder-only models; {config.model_name!r} is an "
                "encoder-decoder model (set model.backend=auto, ctranslate2 or transformers)"
            )
        if _wants_ctranslate2(config, hf_config, device):
            return _ctranslate2_engine(config, model_path, hf_config, device)
        from batchmt.workers.engines.seq2seq import Seq2SeqEngine

        return Seq2SeqEngine(config, model_path, device)
    if backend == "ctranslate2":
        raise EngineLoadError(
            f"model.backend=ctranslate2 serves encoder-decoder models; {config.model_name!r} "
            "is decoder-only (set model.backend=auto or transformers)"
        )
    # Decoder-only: an LLM translator driven by prompts (HY-MT1.5 and its templates), on
    # vLLM when asked for, or with auto when vLLM is installed for this device's kind.
    # A `batchmt quantize` folder goes to vLLM under auto only where its kernels take every
    # layer's format (4/8-bit; 4-bit on CPU); otherwise transformers runs the packed layers.
    if backend == "vllm" or (
        backend == "auto"
        and vllm_serves(device.type)
        and not (packed and packed_folder_problem(config, hf_config, device))
    ):
        from batchmt.workers.engines.vllm_backend.engine import VllmEngine

        engine = VllmEngine(config, model_path, device, hf_config=hf_config)
        if config.terms:  # the constrained decoder, declared and loaded at replica start
            engine.constrained_engine()
        return engine
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
    constrained = _constrained_decoder(config, ct2_path, checkpoint, hf_config, device)
    return CTranslate2Engine(
        config,
        ct2_path,
        device,
        hf_path=checkpoint,
        checkpoint_dtype=dtype,
        constrained=constrained,
    )


def _constrained_decoder(
    config: EngineConfig,
    ct2_path: str,
    checkpoint: str | None,
    hf_config: Any,
    device: torch.device,
) -> TranslationEngine | None:
    """CTranslate2 knows no lexical constraints: with glossary terms, the rows it misses are
    decoded by our search on the transformers model of the same checkpoint. Built here, at
    replica start and only when the job has terms, after a check that both models fit."""
    if not config.terms:
        return None
    if checkpoint is None:
        # A converted folder without its checkpoint: rows that miss a term keep their free
        # translation and say which terms are missing (glossary_missed).
        log.warning("constrained_decoder_unavailable", model=config.model_name)
        return None
    from batchmt.workers.engines.dtypes import requested_dtype
    from batchmt.workers.engines.memory import (
        available_bytes,
        check_models_fit,
        seq2seq_weight_bytes,
    )
    from batchmt.workers.engines.seq2seq import Seq2SeqEngine

    ct2_bytes = sum(f.stat().st_size for f in Path(ct2_path).glob("*.bin"))
    # The transformers model at the dtype it will load in (int8 replicas hold less: the
    # check is on the safe side for them).
    stored = getattr(torch, _checkpoint_dtype(hf_config) or "float32", torch.float32)
    dtype = requested_dtype(config.model, device) or stored
    hf_bytes = seq2seq_weight_bytes(hf_config, dtype)
    check_models_fit(
        {"CTranslate2 model": ct2_bytes, "constrained decoder (transformers)": hf_bytes},
        available_bytes(device),
        model_name=config.model_name,
        device=device,
    )
    log.info("constrained_decoder_loading", model=config.model_name)
    return Seq2SeqEngine(config, checkpoint, device)


def _converted_folder_engine(
    config: EngineConfig, model_path: str, device: torch.device
) -> TranslationEngine:
    """A CTranslate2 folder given as the model: constrained rows need the checkpoint it came
    from, which only our own cache entries record."""
    from batchmt.workers.engines.conversion import read_meta
    from batchmt.workers.engines.ct2 import CTranslate2Engine

    source = read_meta(model_path).get("source")
    hf_path = source if source and Path(source).is_dir() else None
    constrained = None
    if hf_path is not None and config.terms:
        from transformers import AutoConfig

        hf_config = AutoConfig.from_pretrained(hf_path)
        constrained = _constrained_decoder(config, model_path, hf_path, hf_config, device)
    elif config.terms:
        log.warning("constrained_decoder_unavailable", model=config.model_name)
    return CTranslate2Engine(config, model_path, device, hf_path=hf_path, constrained=constrained)
