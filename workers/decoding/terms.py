"""Decoding under glossary terms: build each row's constraints, search, report misses.

Both engine families call this with their own decoder step, so the term guarantee (and
its warning when a term could not be placed) is written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from batchmt.workers.decoding.constraints import RowConstraints, build_row_constraints
from batchmt.workers.decoding.search import DecoderStep, SearchResult, constrained_search

log = structlog.get_logger(__name__)


def search_with_terms(
    step: DecoderStep,
    tokenizer: Any,
    targets: Sequence[Sequence[str]],
    *,
    num_beams: int,
    max_len: Sequence[int],
    eos_id: int,
    forced_prefix: Sequence[int] = (),
    force_eos_at_max: bool,
) -> list[SearchResult]:
    """Beam search where row i must contain every target term in `targets[i]`."""
    constraints: list[RowConstraints | None] = [
        build_row_constraints(tokenizer, row) if row else None for row in targets
    ]
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
