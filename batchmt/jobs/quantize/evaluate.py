"""Translate held-back pairs with a variant of the model (full precision, a uniform format,
the plan) through the worker's own engine, and score them with sacrebleu.

Variants are made by writing the quantized-then-dequantized values into the loaded model's
weights: the packed layers of a written folder dequantize to exactly these values, so the
scores are those of the folder (tests/workers/test_quantization_folder.py checks it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import sacrebleu
from torch import nn

from batchmt.workers.engines.base import Segment, TranslationEngine
from batchmt.workers.quantization.formats import QuantFormat
from batchmt.workers.quantization.rounding import Rounder
from batchmt.workers.quantization.sensitivity import quantized_unit
from batchmt.workers.quantization.units import Unit


@dataclass
class Scores:
    bleu: float
    chrf: float


@contextmanager
def quantized_plan(
    model: nn.Module,
    units: Sequence[Unit],
    plan: dict[str, QuantFormat | None],
    rounder: Rounder,
) -> Iterator[None]:
    with ExitStack() as stack:
        for unit in units:
            fmt = plan.get(unit.name)
            if fmt is not None:
                stack.enter_context(quantized_unit(model, unit, fmt, rounder))
        yield


def translate(engine: TranslationEngine, texts: Sequence[str], batch_size: int = 32) -> list[str]:
    out: list[str] = []
    for start in range(0, len(texts), batch_size):
        segments = [Segment(text=t) for t in texts[start : start + batch_size]]
        out.extend(t.text for t in engine.translate(segments))
    return out


def score(hypotheses: Sequence[str], references: Sequence[str], target_lang: str) -> Scores:
    tokenize = "zh" if target_lang.lower().startswith(("zh", "cmn")) else "13a"
    bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize).score
    chrf = sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score
    return Scores(round(bleu, 2), round(chrf, 2))
