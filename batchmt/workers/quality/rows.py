"""Row-level QE inside a worker: every translated row gets flags and a score.

The model's confidence comes from the decoder when it reported one (`Translation.logprob`);
rows without it (pieces joined, markup restored, an engine whose decoder does not report
scores) are scored by forced decoding (`TranslationEngine.score`) of the final text given
the row's source: one teacher-forced pass, a fraction of the search's cost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from batchmt.pipeline.quality.qe import QeThresholds, RowQe, assess_row
from batchmt.pipeline.results import QeCounts
from batchmt.workers.batching import plan_batches
from batchmt.workers.engines.base import Segment, TranslationEngine

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class QeSettings:
    source_lang: str
    target_lang: str
    thresholds: QeThresholds
    max_batch_tokens: int
    max_batch_size: int
    # The translations are the job model's own (`run`), not given ones (`score`).
    own_output: bool = True


def forced_logprobs(
    engine: TranslationEngine,
    sources: Sequence[str],
    translations: Sequence[str],
    settings: QeSettings,
) -> list[float | None]:
    """`engine.score` over token-budget batches; a batch that fails is halved down to its
    row, and a row the model cannot score gets None (its other checks still run)."""
    out: list[float | None] = [None] * len(sources)
    if not sources:
        return out
    # Source and translation both pass through the model: budget on the longer of the two.
    costs = [
        max(a, b)
        for a, b in zip(engine.count_tokens(list(sources)), engine.count_tokens(list(translations)))
    ]

    def run(batch: list[int]) -> None:
        try:
            scores = engine.score(
                [Segment(sources[i]) for i in batch], [translations[i] for i in batch]
            )
        except Exception as exc:  # noqa: BLE001 - a row the model cannot score keeps None
            if len(batch) == 1:
                log.warning("qe_score_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                return
            half = len(batch) // 2
            run(batch[:half])
            run(batch[half:])
            return
        for i, score in zip(batch, scores, strict=True):
            out[i] = score

    if engine.schedules_batches:  # vLLM: one call, its scheduler batches
        run(list(range(len(costs))))
        return out
    for batch in plan_batches(costs, settings.max_batch_tokens, settings.max_batch_size):
        run(list(batch))
    return out


def assess_rows(
    engine: TranslationEngine,
    sources: Sequence[str | None],
    translations: Sequence[str | None],
    logprobs: Sequence[float | None],
    checked: Sequence[bool],
    settings: QeSettings,
) -> list[RowQe | None]:
    """One RowQe per row where `checked` (a model translation, or a given one); None else."""
    missing = [
        i for i, ok in enumerate(checked) if ok and logprobs[i] is None and (translations[i] or "")
    ]
    filled = list(logprobs)
    scores = forced_logprobs(
        engine,
        [sources[i] or "" for i in missing],
        [translations[i] or "" for i in missing],
        settings,
    )
    for i, score in zip(missing, scores, strict=True):
        filled[i] = score
    return [
        assess_row(
            sources[i] or "",
            translations[i] or "",
            source_lang=settings.source_lang,
            target_lang=settings.target_lang,
            logprob=filled[i],
            thresholds=settings.thresholds,
            own_output=settings.own_output,
        )
        if ok
        else None
        for i, ok in enumerate(checked)
    ]


def count_qe(qes: Sequence[RowQe | None], tried: int = 0, won: int = 0) -> QeCounts:
    """The shard's QE counts for its completion marker and `_SUCCESS`."""
    checked = [q for q in qes if q is not None]
    flags: Counter[str] = Counter(f for q in checked for f in q.flags)
    return QeCounts(
        checked=len(checked),
        flagged=sum(bool(q.flags) for q in checked),
        flag_counts=dict(flags),
        fallback_tried=tried,
        fallback_won=won,
    )
