"""QE-gated fallback: a row whose flags a second decode may cure is translated once more
with `quality.fallback` (a wider beam with repeated n-grams blocked, or another model), and
the better-scored candidate is kept.

The second pass goes through the same shard loop (`translate_rows`), so glossary terms are
constrained, markup restored and validated exactly as in the first. A candidate is never
kept when it is worse on those guarantees (a missed glossary term loses to a met one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import structlog

from batchmt.pipeline.quality.qe import RowQe, better, needs_fallback
from batchmt.pipeline.results import RowResult
from batchmt.pipeline.status import GLOSSARY_MISSED, OK, OK_FALLBACK, OK_SPLIT, is_translated
from batchmt.workers.engines.base import TranslationEngine
from batchmt.workers.quality.rows import QeSettings, assess_rows
from batchmt.workers.translate import RowInput, translate_rows

log = structlog.get_logger(__name__)


def _guarantees(status: str) -> int:
    """Lower is better: every term placed, then a missed term, then no translation."""
    if status in (OK, OK_SPLIT, OK_FALLBACK):
        return 0
    return 1 if status == GLOSSARY_MISSED else 2


def retranslate_flagged(
    engine: TranslationEngine,
    fallback: TranslationEngine,
    rows: Sequence[RowInput],
    sources: Sequence[str | None],
    results: list[RowResult],
    qes: list[RowQe | None],
    settings: QeSettings,
    *,
    same_model: bool,
    formats_mode: str,
) -> tuple[int, int]:
    """Re-translate flagged rows in place of `results` / `qes` where the fallback wins;
    returns (rows tried, rows won).

    Candidates are scored by the job's model: the fallback decoder's own log-prob when it
    is the same model (the blocking changes which tokens are chosen, not their scores), by
    forced decoding under the job's model when the fallback is another model.
    """
    chosen = [i for i, q in enumerate(qes) if q is not None and needs_fallback(q.flags)]
    if not chosen:
        return 0, 0
    second, _ = translate_rows(
        fallback,
        [rows[i] for i in chosen],
        target_lang=settings.target_lang,
        max_batch_tokens=settings.max_batch_tokens,
        max_batch_size=settings.max_batch_size,
        formats_mode=formats_mode,
    )
    candidates = assess_rows(
        engine,
        [sources[i] for i in chosen],
        [r.translation for r in second],
        [r.logprob if same_model else None for r in second],
        [is_translated(r.status) for r in second],
        settings,
    )
    won = 0
    for i, candidate, qe in zip(chosen, second, candidates, strict=True):
        first, first_qe = results[i], qes[i]
        if qe is None or first_qe is None:
            continue
        if _guarantees(candidate.status) > _guarantees(first.status):
            continue
        if not better(first_qe, qe):
            continue
        note = (
            f"re-translated by quality.fallback: the first translation was flagged "
            f"{', '.join(first_qe.flags)} (qe_score {first_qe.score:.3g}), the fallback's "
            f"scored {qe.score:.3g}"
        )
        status = OK_FALLBACK if candidate.status in (OK, OK_SPLIT) else candidate.status
        error = f"{candidate.error}; {note}" if candidate.error else note
        results[i] = dataclasses.replace(candidate, status=status, error=error)
        qes[i] = qe
        won += 1
    log.info("qe_fallback", tried=len(chosen), won=won)
    return len(chosen), won
