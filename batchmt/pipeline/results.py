"""The row vocabulary and what a worker reports for a finished shard.

`RowResult` is one row's output, declared once: its field names are the output columns
(pipeline/columns.py) and the translation memory's columns (pipeline/memory/store.py), and
`arrow_types` gives each field its Arrow type from its annotation, for both.

`ShardResult` is a shard's counts, as the completion marker stores them.

The marker (`_completions/<shard>`, see commit.py) is JSON that outlives a release: a rerun
resumes from markers an older batchmt wrote. So the keys of `to_dict` are a file format,
and `from_dict` reads any marker, giving keys an older marker lacks their defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pyarrow as pa

# A row field's annotation (without "| None": every output column may be null) -> Arrow.
_ARROW_TYPES = {
    "str": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "list[str]": pa.list_(pa.string()),
}


# Field metadata: False keeps a row field out of the output and memory columns.
COLUMN = "column"


def arrow_types(row_class: type) -> dict[str, pa.DataType]:
    """{field: Arrow type} of a row dataclass (RowResult, quality.qe.RowQe), in field order."""
    out = {}
    for item in fields(row_class):
        if not item.metadata.get(COLUMN, True):
            continue
        annotation = str(item.type).removesuffix(" | None")
        if annotation not in _ARROW_TYPES:
            raise TypeError(f"{row_class.__name__}.{item.name}: no Arrow type for {item.type}")
        out[item.name] = _ARROW_TYPES[annotation]
    return out


@dataclass
class RowResult:
    """One row's output. The fields up to `format_detail` are output columns of the same
    name; `logprob` feeds row-level QE (pipeline/quality/qe.py) and the memory."""

    translation: str | None
    status: str
    error: str | None = None
    glossary_hits: list[str] | None = None
    glossary_missed: list[str] | None = None
    format_status: str | None = None
    format_detail: str | None = None
    # The model's confidence: mean token log-prob of the row's least confident piece, as the
    # decoder reported it (None when it did not); row-level QE reads it.
    logprob: float | None = None
    # A glossary term sits in the translation as a fragment (a sentence of its own, after a
    # cut copy of itself): QE adds `term_placement` to the row's flags, which is what the
    # output and the memory keep (so this field is no column of either).
    term_placement: bool = field(default=False, metadata={COLUMN: False})


def result_columns(results: Sequence[RowResult], names: Sequence[str]) -> dict[str, pa.Array]:
    """The output columns `names` (RowResult fields) of `results`, typed."""
    types = arrow_types(RowResult)
    return {n: pa.array([getattr(r, n) for r in results], types[n]) for n in names}


def _counts(value: Any) -> dict[str, int]:
    """{status: rows}, sorted so equal counts serialise to equal bytes."""
    items = value.items() if isinstance(value, Mapping) else ()
    return {str(k): int(v) for k, v in sorted(items)}


@dataclass(frozen=True)
class GlossaryAdherence:
    """Glossary terms found in the shard's sources, and how many translations contain."""

    terms: int
    honoured: int

    @property
    def adherence(self) -> float | None:
        return self.honoured / self.terms if self.terms else None

    def to_dict(self) -> dict[str, Any]:
        return {"terms": self.terms, "honoured": self.honoured, "adherence": self.adherence}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GlossaryAdherence:
        return cls(int(data.get("terms", 0)), int(data.get("honoured", 0)))


@dataclass(frozen=True)
class QeCounts:
    """Row-level QE over the whole shard: rows checked, rows flagged, rows per flag, and
    the fallback's re-translations (tried) and the rows where its candidate won."""

    checked: int = 0
    flagged: int = 0
    flag_counts: dict[str, int] = field(default_factory=dict)
    fallback_tried: int = 0
    fallback_won: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "flagged": self.flagged,
            "flag_counts": _counts(self.flag_counts),
            "fallback_tried": self.fallback_tried,
            "fallback_won": self.fallback_won,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QeCounts:
        return cls(
            int(data.get("checked", 0)),
            int(data.get("flagged", 0)),
            _counts(data.get("flag_counts")),
            int(data.get("fallback_tried", 0)),
            int(data.get("fallback_won", 0)),
        )

    @classmethod
    def total(cls, items: list[QeCounts]) -> QeCounts:
        flags: dict[str, int] = {}
        for item in items:
            for flag, n in item.flag_counts.items():
                flags[flag] = flags.get(flag, 0) + n
        return cls(
            sum(i.checked for i in items),
            sum(i.flagged for i in items),
            flags,
            sum(i.fallback_tried for i in items),
            sum(i.fallback_won for i in items),
        )


@dataclass(frozen=True)
class MemoryCounts:
    """The translation memory over a shard: rows not decoded for themselves (`from_memory`:
    served from the memory, or repeats of a row decoded in this job), of those the repeats
    of a row the same replica decoded (`deduplicated`), and rows this shard added to the
    memory (`stored`)."""

    from_memory: int = 0
    deduplicated: int = 0
    stored: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "from_memory": self.from_memory,
            "deduplicated": self.deduplicated,
            "stored": self.stored,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryCounts:
        return cls(
            int(data.get("from_memory", 0)),
            int(data.get("deduplicated", 0)),
            int(data.get("stored", 0)),
        )

    @classmethod
    def total(cls, items: list[MemoryCounts | None]) -> MemoryCounts:
        """Summed over shards; markers without memory counts (memory off, or written
        before it existed) count as zero."""
        known = [i for i in items if i is not None]
        return cls(
            sum(i.from_memory for i in known),
            sum(i.deduplicated for i in known),
            sum(i.stored for i in known),
        )


@dataclass(frozen=True)
class ShardResult:
    """A shard's counts as its worker returns them; `to_dict` is its completion marker."""

    shard_id: str
    num_rows: int
    status_counts: dict[str, int] = field(default_factory=dict)  # {row status: rows}
    source_tokens: int = 0
    seconds: float = 0.0  # the worker's time on the shard, read to publish
    attempt: int = 0  # 1 for the first try; the driver counts retries
    device: str = ""  # where it ran, and in which process: to trace a bad replica
    pid: int = 0
    format_status_counts: dict[str, int] = field(default_factory=dict)
    glossary: GlossaryAdherence | None = None  # None when the job used no glossary
    qe: QeCounts | None = None  # None in markers written before row-level QE
    memory: MemoryCounts | None = None  # None without a translation memory
    backend: str = ""  # the replica's decoding runtime (vllm, ctranslate2, transformers)
    # What the worker logged for this shard, for the driver to print (pipeline/logs.py);
    # not part of the marker.
    events: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "shard_id": self.shard_id,
            "num_rows": self.num_rows,
            "status_counts": _counts(self.status_counts),
            "source_tokens": self.source_tokens,
            "seconds": self.seconds,
            "attempt": self.attempt,
            "device": self.device,
            "pid": self.pid,
            "format_status_counts": _counts(self.format_status_counts),
        }
        if self.glossary is not None:
            data["glossary"] = self.glossary.to_dict()
        if self.qe is not None:
            data["qe"] = self.qe.to_dict()
        if self.memory is not None:
            data["memory"] = self.memory.to_dict()
        if self.backend:
            data["backend"] = self.backend
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShardResult:
        glossary = data.get("glossary")
        qe = data.get("qe")
        memory = data.get("memory")
        return cls(
            shard_id=str(data.get("shard_id", "")),
            num_rows=int(data.get("num_rows", 0)),
            status_counts=_counts(data.get("status_counts")),
            source_tokens=int(data.get("source_tokens", 0)),
            seconds=float(data.get("seconds", 0.0)),
            attempt=int(data.get("attempt", 0)),
            device=str(data.get("device", "")),
            pid=int(data.get("pid", 0)),
            format_status_counts=_counts(data.get("format_status_counts")),
            glossary=GlossaryAdherence.from_dict(glossary)
            if isinstance(glossary, Mapping)
            else None,
            qe=QeCounts.from_dict(qe) if isinstance(qe, Mapping) else None,
            memory=MemoryCounts.from_dict(memory) if isinstance(memory, Mapping) else None,
            backend=str(data.get("backend", "")),
        )

    @staticmethod
    def memory_total(results: Iterable[ShardResult]) -> dict[str, int]:
        """The translation memory's counts over shards, for `_SUCCESS` and `status`."""
        return MemoryCounts.total([r.memory for r in results]).to_dict()
