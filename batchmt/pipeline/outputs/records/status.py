"""`batchmt status` of one run: shards done and pending, rows by status, `_SUCCESS`, merged
quality, and for a table output the commit (from `_SUCCESS`) and the input version read.
Built from the typed records only; `to_dict` is the `--json` contract (STATUS_VERSION)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from batchmt.pipeline import status as row_status
from batchmt.pipeline.inputs.sources.increments import readable_source
from batchmt.pipeline.outputs.layout import OutputLayout, load_manifest
from batchmt.pipeline.outputs.records.markers import counted_markers
from batchmt.pipeline.outputs.records.quality import read_quality
from batchmt.pipeline.outputs.records.success import Success
from batchmt.pipeline.quality.samples import merge_quality
from batchmt.pipeline.results import QeCounts, ShardResult
from batchmt.pipeline.storage.fs import read_json

STATUS_VERSION = 1
_PENDING_SHOWN = 20


def read_success(layout: OutputLayout) -> Success | None:
    """`_SUCCESS` of the run at `layout`, None until it is written (or not a JSON object)."""
    data = read_json(layout.fs, layout.success)
    return Success.from_dict(data) if isinstance(data, dict) else None


@dataclass(frozen=True)
class JobStatus:
    output: str
    manifest: bool
    spec_fingerprint: str | None
    shards_total: int | None
    done: dict[str, ShardResult]
    pending: list[str]
    rows_input: int | None
    success: Success | None
    partition_by: list[str] = field(default_factory=list)
    source: dict[str, Any] | None = None
    quality: dict[str, Any] | None = None

    @property
    def status_counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for result in self.done.values():
            counts.update(result.status_counts)
        return counts

    @property
    def rows_done(self) -> int:
        return sum(result.num_rows for result in self.done.values())

    @property
    def qe(self) -> QeCounts:
        """Row-level QE over every row of the completed shards (not only the samples)."""
        return QeCounts.total([r.qe for r in self.done.values() if r.qe is not None])

    def to_dict(self) -> dict[str, Any]:
        counts = self.status_counts
        return {
            "version": STATUS_VERSION,
            "output": self.output,
            "manifest": self.manifest,
            "spec_fingerprint": self.spec_fingerprint,
            "shards": {
                "total": self.shards_total,
                "done": len(self.done),
                "pending": len(self.pending),
            },
            "pending_shards": self.pending[:_PENDING_SHOWN],
            "rows": {
                "input": self.rows_input,
                "done": self.rows_done,
                "ok": sum(counts[s] for s in row_status.TRANSLATED),
                "failed": sum(counts[s] for s in row_status.ERRORS),
                "by_status": dict(sorted(counts.items())),
            },
            "success": self.success is not None,
            "partition_by": self.partition_by,
            # How the input was read: format, the Delta version / Iceberg snapshot, the filter.
            "source": self.source,
            # Table outputs: where the rows went and the version that holds them; None until
            # the commit (it comes right before _SUCCESS).
            "table": self.success.table if self.success else None,
            "run": self.success.run_summary() if self.success else {},
            "quality": self.quality,
            "qe": self.qe.to_dict(),
            "memory": ShardResult.memory_total(self.done.values()),
        }


def job_status(layout: OutputLayout) -> JobStatus:
    manifest = load_manifest(layout)
    done = {sid: marker.result for sid, marker in counted_markers(layout).items()}
    quality = read_quality(layout, set(done))
    planned = [s.shard_id for s in manifest.plan.shards] if manifest else []
    return JobStatus(
        output=layout.root,
        manifest=manifest is not None,
        spec_fingerprint=manifest.spec_fingerprint if manifest else None,
        shards_total=len(planned) if manifest else None,
        done=done,
        pending=[sid for sid in planned if sid not in done],
        rows_input=manifest.plan.num_rows if manifest else None,
        success=read_success(layout),
        partition_by=list(manifest.plan.output_partitions) if manifest else [],
        source=readable_source(manifest.plan.source) if manifest else None,
        quality=merge_quality([quality[sid].body for sid in sorted(quality)]) if quality else None,
    )
