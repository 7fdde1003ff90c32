"""The translator actor: one model replica, loaded once, translating shard after shard.

The class is plain Python; `jobs/` wraps it with `ray.remote` and the resources it asks
for (num_gpus=1 or num_cpus), so it can also be driven directly in tests and tools.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import structlog
import torch

from batchmt.pipeline import columns
from batchmt.pipeline.inputs.reader import read_shard_data
from batchmt.pipeline.inputs.shards import Shard
from batchmt.pipeline.logs import LEVEL_ENV, configure_logging, take_events
from batchmt.pipeline.outputs.commit import write_quality, write_shard_data
from batchmt.pipeline.outputs.layout import OutputLayout, load_manifest
from batchmt.pipeline.quality.samples import QualitySettings, ShardRows, shard_quality
from batchmt.pipeline.results import GlossaryAdherence, RowResult, ShardResult, result_columns
from batchmt.pipeline.spec import JobSpec
from batchmt.pipeline.status import INVALID
from batchmt.pipeline.text.context import context_windows
from batchmt.pipeline.text.glossary import Glossary, RowGlossaryError
from batchmt.pipeline.text.glossary_files import load_glossary
from batchmt.workers.engines.base import EngineConfig
from batchmt.workers.engines.checkpoints import resolve_model_path
from batchmt.workers.engines.loading import load_engine, quiet_progress_bars
from batchmt.workers.faults import maybe_inject_fault
from batchmt.workers.formats.plan import FormatOptions
from batchmt.workers.process.devices import place
from batchmt.workers.quality.rows import count_qe
from batchmt.workers.quality.scoring import score_shard
from batchmt.workers.quality.stage import QeStage, with_qe_columns
from batchmt.workers.reuse.stage import MemoryStage, add_reused_stats
from batchmt.workers.translate import (
    RowInput,
    TranslateStats,
    check_not_all_empty,
    translate_rows,
)

log = structlog.get_logger(__name__)


class TranslatorActor:
    def __init__(self, spec_json: str, base_dir: str, num_cpus: int) -> None:
        self.spec = JobSpec.model_validate_json(spec_json)
        # JSON lines in Ray's log files; each event is also kept and travels back to the
        # driver (`events`, ShardResult.events), which prints it in the job's one format.
        configure_logging(os.environ.get(LEVEL_ENV, "INFO"), json=True, capture=True)
        quiet_progress_bars()
        structlog.contextvars.bind_contextvars(job=self.spec.job_name)
        self.placement = place(num_cpus)
        self.base_dir = base_dir
        model_path = resolve_model_path(
            self.spec.model.name_or_path, self.spec.input.storage_options, base_dir
        )
        started = time.perf_counter()
        self.layout = OutputLayout.for_worker(self.spec)
        # Whether rows may carry terms decides whether the engine's constrained decoder is
        # loaded now (workers/engines/loading.py), so it is known before the first shard.
        self.engine_config = EngineConfig.from_spec(
            self.spec, row_glossaries=_row_glossaries(self.layout)
        )
        self.engine = load_engine(
            self.engine_config, model_path, torch.device(self.placement.device)
        )
        self.glossary = (
            load_glossary(
                self.spec.glossary.path,
                self.spec.source_lang,
                self.spec.target_lang,
                self.spec.glossary.storage_options,
            )
            if self.spec.glossary.path
            else None
        )
        # A decoder-only engine knows how many KV-cache tokens its device holds.
        budget = self.spec.decoding.max_batch_tokens
        self.max_batch_tokens = min(budget, self.engine.kv_token_budget or budget)
        self.qe = QeStage(self.engine, self.spec, self.max_batch_tokens, self._load_other)
        self.memory = MemoryStage(self.spec, model_path, dict(self.engine.signature))
        log.info("replica_loaded", seconds=round(time.perf_counter() - started, 2), **self.info())

    def info(self) -> dict[str, Any]:
        """Where this replica runs (device, Ray GPU ids, pid): for logs and tests."""
        return {**self.placement.as_dict(), **self.engine.signature}

    def events(self) -> list[dict[str, Any]]:
        """Events logged since the last call (the model load's, after `info`)."""
        return take_events()

    def process_shard(self, shard: Shard, attempt: int) -> ShardResult:
        """Translate one shard, publish its data and quality files, return its counts and
        the events it logged (for the driver to print).

        The completion marker is the driver's to write, after this returns: a shard whose
        actor died after publishing is simply redone, overwriting the same key.
        """
        result = self._process_shard(shard, attempt)
        return dataclasses.replace(result, events=tuple(take_events()))

    def _process_shard(self, shard: Shard, attempt: int) -> ShardResult:
        maybe_inject_fault(shard.shard_id)
        started = time.perf_counter()
        spec = self.spec
        if spec.input.translation_column is not None:  # batchmt score: nothing to translate
            return score_shard(
                self.engine,
                self.layout,
                spec,
                shard,
                attempt=attempt,
                max_batch_tokens=self.max_batch_tokens,
                device=self.placement.device,
                pid=self.placement.pid,
            )
        data = read_shard_data(shard, spec.input)
        table = data.table
        # Ids stay Arrow values (UUIDs, timestamps, decimals, bytes): only their nulls matter
        # here, and the quality sample encodes the few it shows (pipeline.ids).
        id_column = table.column(spec.input.id_column)
        has_id = pc.is_valid(id_column).to_pylist()
        texts = _as_text(table.column(spec.input.text_column))
        contexts = context_windows(table, spec.input.text_column, spec.context.window)

        row_glossaries = (
            table.column(columns.GLOSSARY).to_pylist()
            if columns.GLOSSARY in table.column_names
            else None
        )
        results = [_unusable(has_id[i], data.row_errors[i]) for i in range(table.num_rows)]
        valid = [i for i, result in enumerate(results) if result is None]
        rows = [
            self._row_input(texts[i], contexts[i], row_glossaries[i] if row_glossaries else None)
            for i in valid
        ]
        # Rows the translation memory answers skip translation and QE (workers/reuse/).
        plan = self.memory.plan(rows)
        todo = [rows[j] for j in plan.decode]
        translated, stats = translate_rows(
            self.engine,
            todo,
            target_lang=spec.target_lang,
            max_batch_tokens=self.max_batch_tokens,
            max_batch_size=spec.decoding.max_batch_size,
            formats_mode=FormatOptions.from_spec(spec.formats),
        )
        # Row-level QE; flagged rows may be replaced by the fallback's translation.
        qes, qe_counts = self.qe.run(todo, [texts[valid[j]] for j in plan.decode], translated)
        reused = self.memory.assemble(plan, translated, qes)
        if self.memory.enabled:
            add_reused_stats(stats, plan, reused)
            qe_counts = count_qe(reused.qes, qe_counts.fallback_tried, qe_counts.fallback_won)
        row_qe: list[Any] = [None] * table.num_rows
        from_memory = [False] * table.num_rows
        for k, i in enumerate(valid):
            results[i], row_qe[i], from_memory[i] = (
                reused.results[k],
                reused.qes[k],
                reused.from_memory[k],
            )
        done = [r for r in results if r is not None]
        if len(done) != len(results):  # the invariant: every row comes back, none dropped
            raise RuntimeError(f"shard {shard.shard_id}: {len(results) - len(done)} rows lost")
        check_not_all_empty(shard.shard_id, done)  # a broken model: fail, never publish

        with_glossary = self.glossary is not None or row_glossaries is not None
        output = _with_results(table, done, with_glossary, spec.formats.mode != "text")
        output = with_qe_columns(output, row_qe)
        output = output.append_column(columns.FROM_MEMORY, pa.array(from_memory, pa.bool_()))
        write_shard_data(self.layout, shard.shard_id, output, self.layout.partition_of(shard))
        stored = self.memory.remember(plan, reused)
        references = (
            table.column(columns.REFERENCE).to_pylist()
            if columns.REFERENCE in table.column_names
            else None
        )
        quality = shard_quality(
            ShardRows(
                shard_id=shard.shard_id,
                sources=texts,
                translations=[r.translation for r in done],
                statuses=[r.status for r in done],
                references=references,
                ids=id_column,
            ),
            QualitySettings(
                sample_size=spec.quality.sample_per_shard,
                signature=dict(self.engine.signature),
                target_lang=spec.target_lang,
            ),
        )
        format_counts, adherence = _adherence(stats, with_glossary)
        # The quality file carries the whole shard's adherence too (not only the sample's).
        quality["format_status_counts"] = format_counts
        if adherence is not None:
            quality["glossary"] = adherence.to_dict()
        quality["qe"] = qe_counts.to_dict()
        write_quality(self.layout, shard.shard_id, quality)
        seconds = time.perf_counter() - started
        log.info(
            "shard_translated",
            shard=shard.shard_id,
            rows=len(done),
            seconds=round(seconds, 2),
            source_tokens=stats.source_tokens,
            batches=stats.batches,
            batch_failures=stats.batch_failures,
        )
        return ShardResult(
            shard_id=shard.shard_id,
            num_rows=len(done),
            status_counts=dict(Counter(r.status for r in done)),
            source_tokens=stats.source_tokens,
            seconds=round(seconds, 3),
            attempt=attempt,
            device=self.placement.device,
            pid=self.placement.pid,
            format_status_counts=format_counts,
            glossary=adherence,
            qe=qe_counts,
            memory=self.memory.counts(plan, stored),
            backend=self.engine.signature.get("backend", "transformers"),
        )

    def _load_other(self, name_or_path: str) -> Any:
        """Another model on this replica's device (quality.fallback.model)."""
        spec = self.spec
        options = spec.quality.fallback
        config = dataclasses.replace(
            self.engine_config,
            model=spec.model.model_copy(update={"name_or_path": name_or_path}),
            decoding=spec.decoding.model_copy(update={"num_beams": options.num_beams}),
        )
        path = resolve_model_path(name_or_path, spec.input.storage_options, self.base_dir)
        return load_engine(config, path, torch.device(self.placement.device))

    def _row_input(self, text: str | None, context: list[str], row_glossary: Any) -> RowInput:
        """The row's glossary is the job's plus its own; a malformed own one fails the row."""
        glossary: Glossary | None = self.glossary
        if row_glossary is not None:
            try:
                glossary = (self.glossary or Glossary()).with_row(row_glossary)
            except RowGlossaryError as exc:
                return RowInput(text, context, None, str(exc))
        return RowInput(text, context, glossary)


def _row_glossaries(layout: OutputLayout) -> bool:
    """Whether the job's input has a per-row glossary column, as its frozen plan says;
    True without a plan (a bare caller): a row may then bring terms."""
    manifest = load_manifest(layout)
    return manifest is None or columns.GLOSSARY in manifest.plan.columns


def _unusable(has_id: bool, read_error: str | None) -> RowResult | None:
    """The result of a row that never reaches the model, or None for a usable row."""
    if not has_id:
        return RowResult(None, INVALID, "id is null: the row cannot be tracked")
    if read_error is not None:
        return RowResult(None, INVALID, read_error)
    return None


def _as_text(column: pa.ChunkedArray) -> list[str | None]:
    """Text as Python strings; a non-string column (e.g. large_string, dictionary) is cast."""
    if not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    return column.to_pylist()


def _with_results(
    table: pa.Table, results: list[RowResult], with_glossary: bool, with_formats: bool
) -> pa.Table:
    names = [*columns.OUTPUT_COLUMNS]
    if with_glossary:
        names += columns.GLOSSARY_COLUMNS
    if with_formats:
        names += columns.FORMAT_COLUMNS
    added = result_columns(results, names)
    for name, values in added.items():
        table = table.append_column(name, values)
    return table


def _adherence(
    stats: TranslateStats, with_glossary: bool
) -> tuple[dict[str, int], GlossaryAdherence | None]:
    """Format-anchoring outcomes and glossary adherence of the whole shard (not a sample)."""
    format_counts = dict(sorted(stats.format_counts.items()))
    if not with_glossary:
        return format_counts, None
    return format_counts, GlossaryAdherence(stats.glossary_terms, stats.glossary_hits)
