"""Progress for long jobs: a bar on a terminal (shards, rows, source tokens/s), logs elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Any

import structlog

from batchmt.pipeline.results import ShardResult

log = structlog.get_logger(__name__)


class Progress:
    def __init__(
        self, shards: int, rows: int, done: dict[str, ShardResult], *, enabled: bool = True
    ) -> None:
        self.started = time.perf_counter()
        self.rows_total = rows
        self.rows_done = sum(r.num_rows for r in done.values())
        self.tokens = 0
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=shards, initial=len(done), unit="shard", dynamic_ncols=True)
            self._refresh()

    def _refresh(self) -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        if self.bar is not None:
            rate = self.tokens / elapsed
            self.bar.set_postfix_str(
                f"rows {self.rows_done:,}/{self.rows_total:,} | {rate:,.0f} src tok/s"
            )

    def tick(self) -> None:
        if self.bar is not None:
            self._refresh()

    def shard_done(self, result: ShardResult) -> None:
        self.rows_done += result.num_rows
        self.tokens += result.source_tokens
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        if self.bar is not None:
            self.bar.update(1)
            self._refresh()
        else:
            log.info(
                "shard_committed",
                shard=result.shard_id,
                rows_done=self.rows_done,
                rows_total=self.rows_total,
                source_tokens_per_s=round(self.tokens / elapsed, 1),
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
