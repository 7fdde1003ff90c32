"""A canary before the job, for models that do not say which language they write.

A multilingual model names its target codes and `preflight.py` checks `target_lang`
against them. A bilingual Marian (opus-mt) model says nothing: its direction is baked in.
`target_lang: fr` with an en->de model would run the whole job, flag every row
`wrong_language` and decode each twice. So a few input rows are translated on the driver's
CPU (greedy, a small model) and their language identified; the job is refused in one line
when they are clearly in one other language.

"Clearly": most rows long enough to identify are, each, at least `_SURE` likely one and the
same other language, not the source's (echoed input is row-level QE's `untranslated`). A
random or weak model writes no language clearly and is left to row-level QE (and
`quality.max_flag_rate`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import structlog
import torch

from batchmt.pipeline.quality.qe import base_language, language_probs, target_probability
from batchmt.pipeline.spec import JobSpec
from batchmt.workers.engines.base import EngineConfig, EngineLoadError, Segment
from batchmt.workers.engines.loading import load_engine, quiet_progress_bars

log = structlog.get_logger(__name__)

CANARY_ROWS = 8
_MIN_WORDS = 4  # shorter rows are too short for language ID
_SURE = 0.8  # one other language this likely, row by row
_MOST = 2 / 3  # of the rows that could be identified


def needs_canary(config: dict[str, object]) -> bool:
    """A bilingual encoder-decoder: the only family that cannot name its target."""
    return config.get("model_type") == "marian"


def pick_texts(texts: list[str | None]) -> list[str]:
    """Up to CANARY_ROWS input texts long enough for language ID."""
    chosen = [t for t in texts if isinstance(t, str) and len(t.split()) >= _MIN_WORDS]
    return chosen[:CANARY_ROWS]


def check_output_language(spec: JobSpec, model_folder: Path, texts: list[str]) -> None:
    """Translate `texts` and raise EngineLoadError when they come out in another language."""
    if not texts:
        return
    quiet_progress_bars()
    # Greedy on plain transformers weights: the language a model writes does not depend on
    # the beam or the runtime, and no CTranslate2 conversion is paid for a few rows.
    decoding = spec.decoding.model_copy(update={"num_beams": 1})
    model = spec.model.model_copy(update={"backend": "transformers", "quantization": "none"})
    config = EngineConfig.from_spec(spec.model_copy(update={"decoding": decoding, "model": model}))
    engine = load_engine(config, str(model_folder), torch.device("cpu"))
    # Only rows the model takes whole: longer ones the job splits at sentence ends first.
    counts = engine.count_tokens(texts)
    texts = [t for t, n in zip(texts, counts, strict=True) if n <= engine.max_input_tokens]
    if not texts:
        return
    try:
        outputs = engine.translate_batch([Segment(t) for t in texts])
    # A check, not the job: the replicas meet a broken model anyway, with its own message.
    except Exception as exc:  # noqa: BLE001
        log.warning("language_canary_skipped", reason=f"{type(exc).__name__}: {exc}"[:300])
        return
    target = base_language(spec.target_lang)
    source = base_language(spec.source_lang)
    verdicts: Counter[str] = Counter()
    judged = 0
    for text in outputs:
        if target_probability(text, target) is None:
            continue  # too short to tell
        judged += 1
        lang, prob = max(language_probs(text).items(), key=lambda kv: kv[1], default=("", 0.0))
        # The source language is no verdict: a model that echoes its input (a random or
        # broken one) is row-level QE's `untranslated` case, not a wrong target_lang.
        if prob >= _SURE and base_language(lang) not in (target, source):
            verdicts[base_language(lang)] += 1
    log.debug("language_canary", rows=len(texts), identified=judged, other=dict(verdicts))
    if not judged or not verdicts:
        return
    other, count = verdicts.most_common(1)[0]
    if count >= _MOST * judged:
        raise EngineLoadError(
            f"target_lang {spec.target_lang!r}: model {spec.model.name_or_path!r} writes "
            f"{other!r}, not {spec.target_lang!r} ({count} of {judged} input rows translated "
            f"before the job were identified as {other}); set target_lang: {other}, or "
            f"choose a model for {spec.source_lang}->{spec.target_lang}"
        )
