"""The shard loop's translation memory stage: rows answered before decoding, and what was
decoded remembered after the shard.

Per shard, before `translate_rows`: each row gets its key (keys.py); a key this replica
already holds (decoded or read in an earlier shard) or the memory holds is served, and of
the rest only the first row of each key is decoded (an exact repeat inside the shard
copies it). Served rows skip translation, QE and the fallback: the memory holds their final
output, QE columns included. After the shard's data file is published, its newly decoded
translations are added to the memory as one new file.

`from_memory` (the output column, and the shard's count) marks every row that was not
decoded for itself: served from the memory, or a repeat of a row this replica decoded in
this job (`deduplicated`, a subset; a repeat another replica decoded first is read from the
memory like any other row). With `cache.path` unset or `cache.mode: off` nothing here runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import structlog

from batchmt.pipeline.memory.store import MemoryReadError, StoredRow, TranslationMemory
from batchmt.pipeline.quality.qe import RowQe
from batchmt.pipeline.results import MemoryCounts, RowResult
from batchmt.pipeline.spec import JobSpec
from batchmt.pipeline.status import is_translated
from batchmt.workers.reuse.keys import RowKeys, model_identity
from batchmt.workers.translate import RowInput, TranslateStats

log = structlog.get_logger(__name__)

# Rows a replica keeps in its own memory between shards; the oldest go first. A few
# hundred bytes each: the bound keeps a long job's replica from growing without end.
_REPLICA_ROWS = 200_000


@dataclass
class ReusePlan:
    """One shard's rows, split into served, copied and decoded."""

    keys: list[str | None]
    served: dict[int, StoredRow] = field(default_factory=dict)  # row -> stored output
    copies: dict[int, int] = field(default_factory=dict)  # row -> its key's first row
    decode: list[int] = field(default_factory=list)  # rows to translate, in order
    own: set[int] = field(default_factory=set)  # served rows this job decoded earlier

    @classmethod
    def everything(cls, count: int) -> ReusePlan:
        return cls([None] * count, decode=list(range(count)))


@dataclass
class Reused:
    """A shard's rows put back together: one result and QE per row, in row order."""

    results: list[RowResult]
    qes: list[RowQe | None]
    from_memory: list[bool]


class MemoryStage:
    """One per replica; `enabled` is False when the job has no memory."""

    def __init__(self, spec: JobSpec, model_path: str, signature: dict[str, str]) -> None:
        self.job_name = spec.job_name
        self.memory = TranslationMemory.open(spec.cache)
        self.keys = (
            RowKeys(spec, model_identity(spec, model_path, signature), signature)
            if self.memory is not None
            else None
        )
        # key -> (output, decoded by this job): rows this replica decoded or read before.
        self._known: dict[str, tuple[StoredRow, bool]] = {}

    @property
    def enabled(self) -> bool:
        return self.keys is not None

    def plan(self, rows: Sequence[RowInput]) -> ReusePlan:
        if self.keys is None or self.memory is None:
            return ReusePlan.everything(len(rows))
        keys = [self.keys.key(row) for row in rows]
        unknown = {k for k in keys if k is not None and k not in self._known}
        try:
            for found, stored in self.memory.lookup(unknown).items():
                self._remember(found, stored, own=False)
        except MemoryReadError as exc:  # the rows are decoded instead: slower, still right
            log.warning("memory_unreadable", error=str(exc))
        plan = ReusePlan(keys)
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key is None:
                plan.decode.append(i)
            elif key in self._known:
                plan.served[i], own = self._known[key]
                if own:
                    plan.own.add(i)
            elif key in first:
                plan.copies[i] = first[key]
            else:
                first[key] = i
                plan.decode.append(i)
        return plan

    def assemble(
        self, plan: ReusePlan, decoded: Sequence[RowResult], qes: Sequence[RowQe | None]
    ) -> Reused:
        """Every row's result and QE: decoded ones as given, the others from memory."""
        count = len(plan.keys)
        results: list[RowResult | None] = [None] * count
        row_qes: list[RowQe | None] = [None] * count
        for i, result, qe in zip(plan.decode, decoded, qes, strict=True):
            results[i], row_qes[i] = result, qe
        for i, stored in plan.served.items():
            # Copies: a replica serves the same stored row to many rows and shards.
            results[i] = replace(stored.result)
            row_qes[i] = replace(stored.qe) if stored.qe is not None else None
        for i, j in plan.copies.items():
            results[i], row_qes[i] = results[j], row_qes[j]
        done = [r for r in results if r is not None]
        if len(done) != count:  # the invariant: every row comes back
            raise RuntimeError(f"translation memory lost {count - len(done)} rows")
        reused = [i in plan.served or i in plan.copies for i in range(count)]
        return Reused(done, row_qes, reused)

    def counts(self, plan: ReusePlan, stored: int) -> MemoryCounts | None:
        if not self.enabled:
            return None
        return MemoryCounts(
            from_memory=len(plan.served) + len(plan.copies),
            deduplicated=len(plan.own) + len(plan.copies),
            stored=stored,
        )

    def remember(self, plan: ReusePlan, reused: Reused) -> int:
        """Keep this shard's new translations (replica and memory); returns rows stored."""
        if self.memory is None:
            return 0
        new: list[tuple[str, StoredRow]] = []
        for i in plan.decode:
            key, result = plan.keys[i], reused.results[i]
            # Failures are not remembered: a model error may not happen again.
            if key is None or not is_translated(result.status):
                continue
            stored = StoredRow(result, reused.qes[i])
            self._remember(key, stored, own=True)
            new.append((key, stored))
        if not new or self.memory.read_only:
            return 0
        try:
            self.memory.add(new, job=self.job_name)
        except Exception as exc:  # noqa: BLE001 - the shard's output is written; only reuse is lost
            log.warning(
                "memory_not_written",
                location=self.memory.url,
                error=f"{type(exc).__name__}: {exc}"[:300],
                fix="check cache.path is writable, or set cache.mode=read_only",
            )
            return 0
        return len(new)

    def _remember(self, key: str, stored: StoredRow, *, own: bool) -> None:
        if len(self._known) >= _REPLICA_ROWS:
            del self._known[next(iter(self._known))]  # oldest first (dicts keep order)
        self._known[key] = (stored, own)


def add_reused_stats(stats: TranslateStats, plan: ReusePlan, reused: Reused) -> None:
    """Format outcomes and glossary adherence count every row of the shard, served ones too
    (as the shard loop counted them when it decoded them)."""
    for i in (*plan.served, *plan.copies):
        result = reused.results[i]
        if result.format_status is not None:
            counts = stats.format_counts
            counts[result.format_status] = counts.get(result.format_status, 0) + 1
        if result.glossary_hits is not None:
            stats.glossary_hits += len(result.glossary_hits)
            stats.glossary_terms += len(result.glossary_hits) + len(result.glossary_missed or [])
