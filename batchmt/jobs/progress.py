"""Progress of a job: one status line on a terminal, `shard_committed` events elsewhere.

The status line names the phase while nothing is translated yet ("starting Ray",
"loading the model on 2 workers"), then counts rows: rows done of all, rows/s and the ETA
from the translation phase only (model loading is not shard time). It is drawn below the
log lines by `pipeline.logs.console`, so no log line tears it, and a ticker thread
redraws it each second while the driver waits on Ray.
"""

from __future__ import annotations

import threading
import time

import structlog

from batchmt.pipeline.logs import console
from batchmt.pipeline.results import ShardResult

log = structlog.get_logger(__name__)

_TICK_S = 1.0


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    def __init__(
        self, shards: int, rows: int, done: dict[str, ShardResult], *, enabled: bool = True
    ) -> None:
        self.shards_total = shards
        self.shards_done = len(done)
        self.rows_total = rows
        self.rows_done = sum(r.num_rows for r in done.values())
        self.rows_this_run = 0
        self.tokens = 0
        self.phase = ""
        self.phase_started = time.perf_counter()
        self.translate_started: float | None = None
        self.live = enabled and console.is_terminal()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.live:
            self._ticker = threading.Thread(target=self._tick_loop, name="progress", daemon=True)
            self._ticker.start()

    def start_phase(self, text: str) -> None:
        """A phase before translation ("starting Ray"): shown with its elapsed time."""
        self.phase, self.phase_started = text, time.perf_counter()
        self.tick()

    def start_translation(self) -> None:
        self.phase, self.translate_started = "", time.perf_counter()
        self.tick()

    def line(self) -> str:
        now = time.perf_counter()
        if self.translate_started is None:
            return f"{self.phase or 'starting'} ... {_clock(now - self.phase_started)}"
        elapsed = max(now - self.translate_started, 1e-6)
        rate = self.rows_this_run / elapsed
        left = self.rows_total - self.rows_done
        eta = _clock(left / rate) if rate > 0 else "--:--"
        share = self.rows_done / self.rows_total if self.rows_total else 1.0
        return (
            f"translating {self.rows_done:,}/{self.rows_total:,} rows ({share:.0%}) | "
            f"{rate:,.1f} rows/s | ETA {eta} | shards {self.shards_done}/{self.shards_total} | "
            f"{_clock(elapsed)}"
        )

    def tick(self) -> None:
        if self.live:
            console.status(self.line())

    def _tick_loop(self) -> None:
        while not self._stop.wait(_TICK_S):
            self.tick()

    def shard_done(self, result: ShardResult) -> None:
        self.shards_done += 1
        self.rows_done += result.num_rows
        self.rows_this_run += result.num_rows
        self.tokens += result.source_tokens
        started = self.translate_started or self.phase_started
        elapsed = max(time.perf_counter() - started, 1e-6)
        if self.live:
            self.tick()
            return
        log.info(
            "shard_committed",
            shard=result.shard_id,
            rows_done=self.rows_done,
            rows_total=self.rows_total,
            rows_per_s=round(self.rows_this_run / elapsed, 2),
            source_tokens_per_s=round(self.tokens / elapsed, 1),
        )

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.live:
            console.status("")
