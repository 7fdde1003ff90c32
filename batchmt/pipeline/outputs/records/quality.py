"""`quality/<shard>.json`: the shard's quality sample (pipeline/quality/samples.py builds
it, `merge_quality` sums many). The sampled rows are typed here, for the report; `body`
keeps the file as written for the sums. Versions: 0 (no version) and 1, the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchmt.pipeline.outputs.layout import OutputLayout
from batchmt.pipeline.outputs.records.markers import read_many
from batchmt.pipeline.outputs.records.version import format_version
from batchmt.pipeline.quality.samples import QUALITY_VERSION


@dataclass(frozen=True)
class QualitySample:
    """One sampled row: where it sits in the shard's data file, and what it said."""

    index: int
    id: Any
    source: str
    translation: str
    reference: str | None
    status: str
    flags: list[str]

    @classmethod
    def from_dict(cls, data: Any) -> QualitySample:
        if not isinstance(data, dict):
            raise TypeError("a sample is not a JSON object")
        reference = data.get("reference")
        return cls(
            index=int(data.get("index", -1)),
            id=data.get("id"),
            source=str(data.get("source") or ""),
            translation=str(data.get("translation") or ""),
            reference=str(reference) if reference is not None else None,
            status=str(data.get("status", "")),
            flags=[str(f) for f in data.get("flags") or []],
        )


@dataclass(frozen=True)
class QualityFile:
    shard_id: str
    samples: list[QualitySample] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)  # the file as written
    version: int = QUALITY_VERSION

    @classmethod
    def from_dict(cls, data: Any, shard_id: str) -> QualityFile:
        if not isinstance(data, dict):
            raise TypeError(f"quality file of shard {shard_id} is not a JSON object")
        version = format_version(data, QUALITY_VERSION, f"quality file of shard {shard_id}")
        samples = [QualitySample.from_dict(s) for s in data.get("samples") or []]
        return cls(str(data.get("shard_id", shard_id)), samples, dict(data), version)


def read_quality(layout: OutputLayout, shard_ids: set[str] | list[str]) -> dict[str, QualityFile]:
    """{shard id: its quality file} of the shards that have a readable one."""
    bodies = read_many(layout, {sid: layout.quality(sid) for sid in shard_ids})
    return {sid: QualityFile.from_dict(body, sid) for sid, body in bodies.items()}
