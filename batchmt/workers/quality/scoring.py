"""`batchmt score`: a shard of given translations checked and scored, nothing translated.

The shard comes through the same path as `run` (the driver's dispatch, the shard reader,
the data file published whole, then the quality file, then the driver's completion
marker), so sharding, resume and exactly-once hold unchanged. Each row gets the checks of
`run` and the model's confidence by forced decoding (`TranslationEngine.score`); with a
`reference` column, BLEU and chrF statistics cover every row of the shard, not a sample.
"""

from __future__ import annotations

import time
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from batchmt.pipeline import columns
from batchmt.pipeline.inputs.reader import read_shard_data
from batchmt.pipeline.inputs.shards import Shard
from batchmt.pipeline.outputs.commit import write_quality, write_shard_data
from batchmt.pipeline.outputs.layout import OutputLayout
from batchmt.pipeline.quality.metrics import reference_scores
from batchmt.pipeline.quality.samples import (
    QualitySettings,
    ShardRows,
    shard_quality,
)
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.spec import JobSpec
from batchmt.pipeline.status import EMPTY, INVALID, OK
from batchmt.workers.engines.base import TranslationEngine
from batchmt.workers.quality.rows import assess_rows, count_qe
from batchmt.workers.quality.stage import qe_settings, with_qe_columns


def _text(table: pa.Table, name: str) -> list[str | None]:
    column = table.column(name)
    if not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    return column.to_pylist()


def score_shard(
    engine: TranslationEngine,
    layout: OutputLayout,
    spec: JobSpec,
    shard: Shard,
    *,
    attempt: int,
    max_batch_tokens: int,
    device: str,
    pid: int,
) -> ShardResult:
    """Score one shard's given translations; publish data and quality files."""
    started = time.perf_counter()
    column = spec.input.translation_column or columns.TRANSLATION
    data = read_shard_data(shard, spec.input)
    table = data.table
    ids = table.column(spec.input.id_column)
    has_id = pc.is_valid(ids).to_pylist()
    sources = _text(table, spec.input.text_column)
    translations = _text(table, column)
    statuses = [
        INVALID
        if not has_id[i] or data.row_errors[i] is not None
        else (OK if (sources[i] or "").strip() else EMPTY)
        for i in range(table.num_rows)
    ]
    # A missing or empty translation of a real source is checked too: it is flagged
    # empty_output with score 0, not skipped.
    checked = [s == OK for s in statuses]
    qes = assess_rows(
        engine,
        sources,
        translations,
        [None] * len(sources),  # forced decoding for every row
        checked,
        qe_settings(spec, max_batch_tokens, own_output=False),
    )
    output = with_qe_columns(table, qes)
    write_shard_data(layout, shard.shard_id, output, layout.partition_of(shard))
    references = (
        _text(table, columns.REFERENCE) if columns.REFERENCE in table.column_names else None
    )
    quality = shard_quality(
        ShardRows(shard.shard_id, sources, translations, statuses, references, ids),
        QualitySettings(
            sample_size=spec.quality.sample_per_shard,
            signature={**engine.signature, "mode": "score"},
            target_lang=spec.target_lang,
        ),
    )
    if references is not None:
        pairs = [
            (translations[i] or "", ref)
            for i, ref in enumerate(references)
            if ref and statuses[i] != INVALID
        ]
        quality["reference"] = reference_scores(
            [h for h, _ in pairs], [r for _, r in pairs], spec.target_lang
        )
    counts = count_qe(qes)
    quality["qe"] = counts.to_dict()
    write_quality(layout, shard.shard_id, quality)
    return ShardResult(
        shard_id=shard.shard_id,
        num_rows=table.num_rows,
        status_counts=dict(Counter(statuses)),
        source_tokens=0,
        seconds=round(time.perf_counter() - started, 3),
        attempt=attempt,
        device=device,
        pid=pid,
        qe=counts,
    )
