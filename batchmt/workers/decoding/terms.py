"""Decoding under glossary terms: search with each row's constraints, report misses.

Both engine families call this with their own decoder step and the constraints their
`TermDefaults` built (terms replacing the model's default renderings), so the term
guarantee and its warning when a term could not be placed are written once.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from batchmt.workers.decoding.constraints import RowConstraints
from batchmt.workers.decoding.search import DecoderStep, SearchResult, constrained_search

log = structlog.get_logger(__name__)


def search_with_terms(
    step: DecoderStep,
    constraints: Sequence[RowConstraints | None],
    *,
    num_beams: int,
    max_len: Sequence[int],
    eos_id: int,
    forced_prefix: Sequence[int] = (),
    force_eos_at_max: bool,
) -> list[SearchResult]:
    """Beam search where row i meets `constraints[i]` (None: a row without terms)."""
    results = constrained_search(
        step,
        constraints,
        num_beams=num_beams,
        max_len=list(max_len),
        eos_id=eos_id,
        forced_prefix=list(forced_prefix),
        force_eos_at_max=force_eos_at_max,
    )
    unmet = sum(1 for r in results if not r.met)
    if unmet:
        log.warning("glossary_terms_unmet", rows=unmet, batch=len(results))
    return results
