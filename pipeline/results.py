"""What a worker reports for a finished shard: its counts, as the completion marker stores them.

The marker (`_completions/<shard>`, see commit.py) is JSON that outlives a release: a rerun
resumes from markers an older batchmt wrote. So the keys of `to_dict` are a file format,
and `from_dict` reads any marker, giving keys an older marker lacks their defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShardResult:
        glossary = data.get("glossary")
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
        )
