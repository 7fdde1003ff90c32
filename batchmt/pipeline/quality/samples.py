"""Per-shard quality samples with summable statistics, and their job-level merge.

Each shard scores a deterministic sample of its rows (same rows on every retry and machine).
Reference-based scores are stored as sacrebleu *sufficient statistics*, so the job's BLEU and
chrF are computed from summed statistics, exactly as if the whole sample had been scored at
once, never as an average of shard scores. Every file carries a signature (model,
quantization, metric configuration) so scores from different setups are never mixed unnoticed.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from batchmt.pipeline import status as row_status
from batchmt.pipeline.ids import JsonScalar, id_to_json
from batchmt.pipeline.quality.checks import (  # noqa: F401 - the sample's checks
    STRING_FLAGS,
    repeated_ngram_ratio,
    row_flags,
)
from batchmt.pipeline.quality.metrics import merged_scores, reference_scores, signature

log = logging.getLogger(__name__)

# 2: `length_ratio` (and `length_ratio_sum`) is the weighted ratio of quality/checks.py, as
# QE has it (1: plain characters); both read.
QUALITY_VERSION = 2
FLAGS = STRING_FLAGS
# A shard whose sampled rows are flagged more often than this is marked for a second look
# (or re-translation with a fallback model).
SHARD_FLAG_RATE_LIMIT = 0.25


def sample_indices(shard_id: str, num_rows: int, k: int) -> list[int]:
    """`min(k, num_rows)` row indices, sorted, chosen by hashing (shard_id, index).

    hashlib, not hash() or random: the choice must not depend on PYTHONHASHSEED or the
    Python version, so a retried shard samples the same rows anywhere.
    """
    if k <= 0 or num_rows <= 0:
        return []
    if k >= num_rows:
        return list(range(num_rows))
    prefix = shard_id.encode() + b"\0"

    def rank(i: int) -> bytes:
        return hashlib.blake2b(prefix + str(i).encode(), digest_size=8).digest()

    return sorted(heapq.nsmallest(k, range(num_rows), key=rank))


def _plain(value: Any) -> Any:
    """pyarrow scalars (when callers pass arrays) to Python values."""
    return value.as_py() if isinstance(value, pa.Scalar) else value


def _json_id(value: Any) -> JsonScalar:
    """An id as JSON: Arrow scalars by pipeline.ids' stable spelling (UUIDs, timestamps,
    decimals, bytes); plain Python values as they are when JSON has them, else as text."""
    if isinstance(value, pa.Scalar):
        return id_to_json(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return str(value)


@dataclass(frozen=True)
class ShardRows:
    """One shard's rows as scoring needs them: parallel sequences in row order.

    Python lists or pyarrow arrays; `references` only when the input has that column.
    """

    shard_id: str
    sources: Sequence[Any]
    translations: Sequence[Any]
    statuses: Sequence[Any]
    references: Sequence[Any] | None = None
    ids: Sequence[Any] | None = None

    def __post_init__(self) -> None:
        parts = [self.sources, self.translations, self.statuses, self.references, self.ids]
        lengths = {len(part) for part in parts if part is not None}
        if len(lengths) > 1:
            raise ValueError(f"shard {self.shard_id}: row sequences differ in length {lengths}")


@dataclass(frozen=True)
class QualitySettings:
    """The same for every shard of a job, so their statistics can be summed."""

    sample_size: int  # rows scored per shard (quality.sample_per_shard)
    signature: Mapping[str, Any]  # the engine's: model, quantization, ...
    target_lang: str | None = None  # BLEU tokenises by it (e.g. zh, ja)


def shard_quality(rows: ShardRows, settings: QualitySettings) -> dict[str, Any]:
    """Score the shard's sample; return a JSON-ready dict (see merge_quality for the sum).

    Rows that were not translated count in `sample_status_counts` only. With references,
    every sampled row that has one is scored, a failed row as an empty hypothesis (a
    failure should cost score, not vanish from it).
    """
    target_lang = settings.target_lang
    indices = sample_indices(rows.shard_id, len(rows.sources), settings.sample_size)
    status_counts: Counter[str] = Counter()
    flag_counts: Counter[str] = Counter()
    checked = flagged_rows = 0
    ratio_sum = 0.0
    samples = []
    hyps: list[str] = []
    refs: list[str] = []
    for i in indices:
        source = _plain(rows.sources[i]) or ""
        translation = _plain(rows.translations[i])
        state = str(_plain(rows.statuses[i]))
        reference = _plain(rows.references[i]) if rows.references is not None else None
        status_counts[state] += 1
        flags: list[str] = []
        ratio = repeat = None
        if row_status.is_translated(state):
            flags, ratio, repeat = row_flags(source, translation or "")
            checked += 1
            ratio_sum += ratio
            flag_counts.update(flags)
            flagged_rows += bool(flags)
        if reference and state != row_status.EMPTY:
            hyps.append(translation or "")
            refs.append(reference)
        samples.append(
            {
                "index": i,
                "id": _json_id(rows.ids[i]) if rows.ids is not None else None,
                "source": source,
                "translation": translation,
                "reference": reference,
                "status": state,
                "flags": flags,
                "length_ratio": ratio,
                "repeated_ngram_ratio": repeat,
            }
        )

    reference_part = reference_scores(hyps, refs, target_lang)
    return {
        "version": QUALITY_VERSION,
        "shard_id": rows.shard_id,
        "signature": {
            **settings.signature,
            **signature(target_lang),
            "target_lang": target_lang,
        },
        "num_rows": len(rows.sources),
        # How to read the sample ids back (pipeline.ids.id_from_json with this type).
        "id_type": str(rows.ids.type)
        if isinstance(rows.ids, (pa.Array, pa.ChunkedArray))
        else None,
        "sample_size": len(indices),
        "sample_status_counts": dict(sorted(status_counts.items())),
        "checked": checked,
        "flag_counts": {flag: flag_counts[flag] for flag in FLAGS},
        "flagged_rows": flagged_rows,
        "length_ratio_sum": ratio_sum,
        "flagged": checked > 0 and flagged_rows / checked > SHARD_FLAG_RATE_LIMIT,
        "reference": reference_part,
        "samples": samples,
    }


def merge_quality(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Job-level summary: BLEU/chrF from summed statistics, flag rates over checked rows."""
    signatures = {_signature_key(item.get("signature", {})) for item in items}
    if len(signatures) > 1:
        log.warning(
            "quality files carry %d different signatures; scores mix setups", len(signatures)
        )
    checked = sum(item.get("checked", 0) for item in items)
    flag_counts = {
        flag: sum(item.get("flag_counts", {}).get(flag, 0) for item in items) for flag in FLAGS
    }
    flagged_rows = sum(item.get("flagged_rows", 0) for item in items)
    status_counts: Counter[str] = Counter()
    for item in items:
        status_counts.update(item.get("sample_status_counts", {}))
    summary: dict[str, Any] = {
        "shards": len(items),
        "sampled_rows": sum(item.get("sample_size", 0) for item in items),
        "sample_status_counts": dict(sorted(status_counts.items())),
        "checked": checked,
        "flag_counts": flag_counts,
        "flag_rates": {
            flag: (count / checked if checked else 0.0) for flag, count in flag_counts.items()
        },
        "flagged_row_rate": flagged_rows / checked if checked else 0.0,
        "mean_length_ratio": sum(item.get("length_ratio_sum", 0.0) for item in items) / checked
        if checked
        else None,
        "flagged_shards": sorted(item["shard_id"] for item in items if item.get("flagged")),
        "signature": items[0].get("signature") if items else None,
        "mixed_signatures": len(signatures) > 1,
        "bleu": None,
        "chrf": None,
        "reference_segments": 0,
    }
    scored = [item["reference"] for item in items if item.get("reference")]
    if scored:
        target_lang = (items[0].get("signature") or {}).get("target_lang")
        summary.update(merged_scores(scored, target_lang))
    return summary


def _signature_key(signature: dict[str, Any]) -> str:
    return repr(sorted((k, str(v)) for k, v in signature.items()))
