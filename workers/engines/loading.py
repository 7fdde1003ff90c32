"""Pick and load the engine for a model: the family comes from the model's own config."""

from __future__ import annotations

import torch

from batchmt.workers.engines.base import EngineConfig, EngineLoadError, TranslationEngine


def quiet_progress_bars() -> None:
    """Loading bars from transformers/hub inside actors only clutter the job's log stream."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_engine(config: EngineConfig, model_path: str, device: torch.device) -> TranslationEngine:
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
        from batchmt.workers.engines.seq2seq import Seq2SeqEngine

        return Seq2SeqEngine(config, model_path, device)
    # Decoder-only: an LLM translator driven by prompts (HY-MT1.5 and its templates).
    from batchmt.workers.engines.causal import CausalEngine

    return CausalEngine(config, model_path, device, hf_config=hf_config)
