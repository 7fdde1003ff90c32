"""What the benchmarks share: a demo-model engine built from a JobSpec, and a translate
function over the worker's own shard loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def demo_engine(
    model_dir: str,
    *,
    quantization: str = "none",
    backend: str = "auto",
    dtype: str = "auto",
    device: str | torch.device = "cpu",
    source_lang: str = "en",
    target_lang: str = "de",
    terms: bool = False,
    quantized_layers: str = "packed",
) -> tuple[Any, Callable[[list[str]], list[str]]]:
    """(engine, translate) for `model_dir`, beam 4, the job defaults for batching; `terms`:
    rows carry glossary terms (CTranslate2 then loads its constrained decoder)."""
    from batchmt.pipeline.spec import spec_from_dict
    from batchmt.workers.engines.base import EngineConfig
    from batchmt.workers.engines.loading import load_engine
    from batchmt.workers.translate import translate_texts

    spec = spec_from_dict(
        {
            "source_lang": source_lang,
            "target_lang": target_lang,
            "input": {"path": "unused"},
            "output": {"path": "unused"},
            "model": {
                "name_or_path": model_dir,
                "quantization": quantization,
                "backend": backend,
                "dtype": dtype,
                "quantized_layers": quantized_layers,
            },
            "decoding": {"num_beams": 4},
        }
    )
    config = EngineConfig.from_spec(spec, row_glossaries=terms)
    engine = load_engine(config, model_dir, torch.device(device))

    def translate(texts: list[str]) -> list[str]:
        results, _ = translate_texts(
            engine,
            texts,
            [[] for _ in texts],
            target_lang=target_lang,
            max_batch_tokens=spec.decoding.max_batch_tokens,
            max_batch_size=spec.decoding.max_batch_size,
        )
        return [r.translation or "" for r in results]

    return engine, translate
