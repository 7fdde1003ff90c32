"""The shard loop's QE stage, as the actor calls it: assess every translated row, give
flagged rows their fallback, and add `qe_score` / `qe_flags` to the output table."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import pyarrow as pa

from batchmt.pipeline import columns
from batchmt.pipeline.quality.qe import TERM_PLACEMENT, QeThresholds, RowQe, needs_fallback
from batchmt.pipeline.results import QeCounts, RowResult
from batchmt.pipeline.spec import JobSpec
from batchmt.pipeline.status import is_translated
from batchmt.workers.engines.base import TranslationEngine
from batchmt.workers.quality.fallback import retranslate_flagged
from batchmt.workers.quality.rows import QeSettings, assess_rows, count_qe
from batchmt.workers.translate import RowInput

#: Loads another model for `quality.fallback.model`: (model name or path) -> engine.
ModelLoader = Callable[[str], TranslationEngine]


def qe_settings(spec: JobSpec, max_batch_tokens: int, *, own_output: bool = True) -> QeSettings:
    return QeSettings(
        source_lang=spec.source_lang,
        target_lang=spec.target_lang,
        thresholds=QeThresholds.from_mapping(spec.quality.thresholds),
        max_batch_tokens=max_batch_tokens,
        max_batch_size=spec.decoding.max_batch_size,
        own_output=own_output,
    )


class QeStage:
    """One per replica; the fallback engine is made on the first flagged row (a second
    model is loaded only when a job names one and needs it)."""

    def __init__(
        self, engine: TranslationEngine, spec: JobSpec, max_batch_tokens: int, load: ModelLoader
    ) -> None:
        self.engine = engine
        self.spec = spec
        self.settings = qe_settings(spec, max_batch_tokens)
        self.load = load
        self._fallback: TranslationEngine | None = None
        self._same_model = spec.quality.fallback.model is None

    def _fallback_engine(self) -> TranslationEngine | None:
        options = self.spec.quality.fallback
        if self._fallback is None:
            base = self.engine if options.model is None else self.load(options.model)
            # An engine without a second search still helps when it is another model.
            self._fallback = base.fallback_engine(
                options.num_beams, options.no_repeat_ngram_size
            ) or (None if options.model is None else base)
        return self._fallback

    def run(
        self, rows: Sequence[RowInput], sources: Sequence[str | None], results: list[RowResult]
    ) -> tuple[list[RowQe | None], QeCounts]:
        """QE for the translated rows (results may be replaced by the fallback's)."""
        qes = assess_rows(
            self.engine,
            sources,
            [r.translation for r in results],
            [r.logprob for r in results],
            [is_translated(r.status) for r in results],
            self.settings,
        )
        tried = won = 0
        wanted = self.spec.quality.fallback.enabled and any(
            q is not None and needs_fallback(q.flags) for q in qes
        )
        fallback = self._fallback_engine() if wanted else None
        if fallback is not None:
            tried, won = retranslate_flagged(
                self.engine,
                fallback,
                rows,
                sources,
                results,
                qes,
                self.settings,
                same_model=self._same_model,
                formats_mode=self.spec.formats.mode,
            )
        for i, result in enumerate(results):
            found = qes[i]
            if result.term_placement and found is not None and TERM_PLACEMENT not in found.flags:
                # Not hidden: the row's glossary term could only be written as a fragment.
                qes[i] = dataclasses.replace(found, flags=[*found.flags, TERM_PLACEMENT])
        return qes, count_qe(qes, tried, won)


def with_qe_columns(table: pa.Table, qes: Sequence[RowQe | None]) -> pa.Table:
    """`qe_score` (null where no row was checked) and `qe_flags` (empty list there)."""
    scores = pa.array([q.score if q else None for q in qes], pa.float64())
    flags = pa.array([list(q.flags) if q else [] for q in qes], pa.list_(pa.string()))
    return table.append_column(columns.QE_SCORE, scores).append_column(columns.QE_FLAGS, flags)
