"""The driver run loop: plan, start the actor pool, stream shards, commit, report.

The driver holds only shard descriptors and small shard results: the corpus is read by
the actors, shard by shard. Completion markers are written here, after an actor has
published the shard's data and quality files, so a marker always means "done whole".

The driver holds the output's lease (pipeline/outputs/lease.py) from claiming the output to the end:
a heartbeat thread renews it, every marker and `_SUCCESS` is written only after checking it
is still ours, and the actors get its generation so they cannot publish after a takeover.
SIGTERM (a scheduler stopping the job) ends the run like Ctrl-C: the lease is released and
committed shards are kept for the resume.

A Delta or Iceberg output gets one table commit (pipeline/outputs/table_commit.py) after the last
marker and before `_SUCCESS`; it is idempotent, so a driver killed on either side of it
reruns into exactly one commit. Fault tests stop the driver right there: with
BATCHMT_DRIVER_EXIT_AT=before_table_commit or after_table_commit it exits at once (status
75, no cleanup, like a kill) at that point. Unset, it does nothing.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import structlog
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from batchmt.jobs.prepare import Prepared, prepare
from batchmt.jobs.progress import Progress
from batchmt.jobs.ray.cluster import (
    PoolShape,
    actor_runtime_env,
    check_paths_reachable,
    connect,
    pool_shape,
)
from batchmt.jobs.reports.flags import flag_rate
from batchmt.pipeline import status as row_status
from batchmt.pipeline.errors import JobFailed
from batchmt.pipeline.inputs.duplicates import DuplicateIds, duplicate_ids
from batchmt.pipeline.inputs.shards import Plan, Shard
from batchmt.pipeline.inputs.sources.increments import increment_key, readable_source
from batchmt.pipeline.logs import replay
from batchmt.pipeline.outputs.commit import mark_complete, unclaim, write_success
from batchmt.pipeline.outputs.layout import (
    LAYOUT_ENV,
    REPLACED_FILE,
    OutputConflictError,
    OutputLayout,
)
from batchmt.pipeline.outputs.lease import GENERATION_ENV, Heartbeat, LeaseLostError
from batchmt.pipeline.outputs.records.markers import completed_shards
from batchmt.pipeline.outputs.supersede import supersede_parquet
from batchmt.pipeline.outputs.table_commit import commit_table, find_commit, recorded_properties
from batchmt.pipeline.outputs.tables.common import TableCommitError
from batchmt.pipeline.results import QeCounts, ShardResult
from batchmt.pipeline.spec import JobSpec
from batchmt.pipeline.storage.fs import join, read_json, write_json
from batchmt.workers.actor import TranslatorActor
from batchmt.workers.engines.base import EngineLoadError

log = structlog.get_logger(__name__)

# Loading a large model from a hub can take minutes; past this a replica is reported stuck.
_ACTOR_START_TIMEOUT_S = 1800.0
# Fault tests: exit the driver at a named point of the table commit (module docstring).
EXIT_AT_ENV = "BATCHMT_DRIVER_EXIT_AT"
_EXIT_STATUS = 75


@dataclass
class Timings:
    """Where the driver's wall time went; `driver_busy` is the driver's own overhead."""

    plan: float = 0.0
    connect: float = 0.0
    pool_start: float = 0.0  # replicas loading their models
    translate: float = 0.0  # first dispatch to last result
    driver_busy: float = 0.0  # inside the dispatch loop, outside ray.wait
    worker_busy: float = 0.0  # sum of shard seconds reported by the workers
    workers: int = 0

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 3) for k, v in self.__dict__.items()}


@dataclass
class JobOutcome:
    output_path: str
    state: str  # "new" | "resume" | "complete"
    shards_total: int
    shards_run: int
    shards_skipped: int
    summary: dict[str, Any]
    wall_seconds: float
    failed_shards: dict[str, str] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)


@dataclass
class _Slot:
    index: int
    handle: Any
    shard: Shard | None = None
    ref: Any = None


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _trap_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so a stopped job cleans up like Ctrl-C.

    Called again after `ray.init`: Ray's core worker installs a C++ SIGTERM handler that
    aborts the process (exit -6, no cleanup). Only the main thread may set handlers;
    elsewhere (a notebook's worker thread) nothing changes.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    _trap_sigterm()
    try:
        yield
    finally:
        # None: a handler set outside Python (Ray's), which Python cannot put back.
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def run_job(
    spec: JobSpec, *, base_dir: str | None = None, show_progress: bool = True
) -> JobOutcome:
    with _sigterm_as_interrupt():
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(job=spec.job_name)
        prepared = prepare(spec, base_dir)
        layout = prepared.layout
        with Heartbeat(layout.fs, layout.root, prepared.lease) as heartbeat:
            try:
                return _run(spec, prepared, heartbeat, started, base_dir, show_progress)
            except LeaseLostError as exc:
                raise JobFailed(str(exc)) from None


def _run(
    spec: JobSpec,
    prepared: Prepared,
    heartbeat: Heartbeat,
    started: float,
    base_dir: str | None,
    show_progress: bool,
) -> JobOutcome:
    timings = Timings()
    timings.plan = time.perf_counter() - started
    layout, plan = prepared.layout, prepared.plan
    done = completed_shards(layout)
    pending = [s for s in plan.shards if s.shard_id not in done]
    log.info(
        "job_planned",
        output=spec.output.path,
        state=prepared.state,
        shards=len(plan.shards),
        already_done=len(done),
        rows=plan.num_rows,
        fingerprint=prepared.fingerprint,
    )
    failed: dict[str, str] = {}
    # Ids the input repeats: translated and written all the same, but said (issue #23).
    repeated = duplicate_ids(plan, spec.input) if pending else DuplicateIds()
    if repeated.ids:
        log.warning("duplicate_ids", **repeated.as_dict())
    if pending and layout.is_table:
        _refuse_if_committed(spec, layout)
    if pending:
        progress = Progress(len(plan.shards), plan.num_rows, done, enabled=show_progress)
        try:
            mark = time.perf_counter()
            progress.start_phase("starting Ray")
            connect(spec)
            _trap_sigterm()
            check_paths_reachable(spec, ray.nodes())
            timings.connect = time.perf_counter() - mark
            shape = pool_shape(spec, len(pending), ray.cluster_resources())
            log.info("actor_pool", shape=shape.describe())
            failed = _run_pool(
                spec,
                layout,
                heartbeat,
                pending,
                shape,
                base_dir or str(Path.cwd()),
                progress,
                timings,
            )
        except EngineLoadError as exc:
            if prepared.state != "new":
                raise
            # No replica could load the model: the claim this run just made goes, so the
            # rerun with a fixed model is a new job (exit 2, like a model preflight refused).
            heartbeat.check()
            unclaim(layout)
            raise EngineLoadError(f"{exc}; the output was left unclaimed") from None
        finally:
            progress.close()
    results = completed_shards(layout)
    summary = summarize(spec, prepared.fingerprint, plan.num_rows, len(plan.shards), results)
    if not failed and len(results) == len(plan.shards):
        summary["wall_seconds_last_run"] = round(time.perf_counter() - started, 2)
        summary["timings_last_run"] = timings.as_dict()
        summary.update(_output_summary(spec, layout, plan))
        if repeated.ids:
            summary["duplicate_ids"] = repeated.as_dict()
        _refuse_if_too_flagged(spec, summary)
        heartbeat.check()  # a driver that lost the output never commits nor writes _SUCCESS
        if layout.is_table:
            summary["table"].update(_commit(spec, prepared, heartbeat, results))
            if increment_key(plan.source):
                summary["rows_new"] = plan.num_rows
                summary["rows_replaced"] = summary["table"].get("rows_replaced", 0)
        elif layout.runs_root:
            summary["rows_new"] = plan.num_rows
            summary["rows_replaced"] = _supersede(spec, layout, plan)
            summary["run_folder"] = f"_batchmt/{layout.job_key}"
        write_success(layout, summary, heartbeat.record)
        log.info("job_succeeded", **{k: summary[k] for k in ("rows_in", "ok", "failed")})
    state = prepared.state if pending else "complete"
    outcome = JobOutcome(
        output_path=spec.output.path,
        state=state,
        shards_total=len(plan.shards),
        shards_run=len(pending) - len(failed),
        shards_skipped=len(done),
        summary=summary,
        wall_seconds=time.perf_counter() - started,
        failed_shards=failed,
        timings=timings,
    )
    if failed:
        names = ", ".join(f"{sid} ({why})" for sid, why in sorted(failed.items()))
        raise JobFailed(
            f"{len(failed)} shard(s) failed, no _SUCCESS written: {names}. The other "
            f"{len(results)} shard(s) are committed; rerun the same command to retry only "
            "the failed ones"
        )
    return outcome


def _refuse_if_too_flagged(spec: JobSpec, summary: dict[str, Any]) -> None:
    """quality.max_flag_rate: too many flagged rows fail the job before _SUCCESS (and
    before a table commit); the shards stay, so a rerun with another limit only decides."""
    limit = spec.quality.max_flag_rate
    share, flagged, checked = flag_rate(summary)
    if limit is not None and share > limit:
        raise JobFailed(
            f"{flagged:,} of {checked:,} rows ({share:.1%}) were flagged by quality checks, "
            f"more than quality.max_flag_rate {limit:.1%}; no _SUCCESS written. Inspect with "
            f"`batchmt report {spec.output.path}`; a rerun with a higher limit (or none) "
            "finishes without translating again"
        )


def _supersede(spec: JobSpec, layout: OutputLayout, plan: Plan) -> int:
    """A Parquet output's increment: older runs' rows with this run's ids go, before
    _SUCCESS (pipeline/outputs/supersede.py)."""
    started = time.perf_counter()
    # A rerun after a kill between the rewrites and _SUCCESS finds the ids already gone:
    # the count of the killed attempt is kept beside the markers.
    path = join(layout.root, REPLACED_FILE)
    earlier = read_json(layout.fs, path) or {}
    replaced = supersede_parquet(layout, plan, spec.input.id_column)
    replaced += int(earlier.get("rows_replaced", 0)) if isinstance(earlier, dict) else 0
    write_json(layout.fs, path, {"rows_replaced": replaced})
    seconds = round(time.perf_counter() - started, 2)
    log.info("rows_replaced", rows_new=plan.num_rows, rows_replaced=replaced, seconds=seconds)
    return replaced


def _refuse_if_committed(spec: JobSpec, layout: OutputLayout) -> None:
    """A job whose table commit exists must not write its files again: they are the
    table's now (the bookkeeping was deleted, or output.overwrite asked to start over)."""
    earlier = find_commit(spec.output, layout)
    if earlier is not None:
        raise OutputConflictError(
            f"job {layout.job_key} is already committed to table {spec.output.path} "
            f"(version {earlier.version}) but has shards to run; its files belong to the "
            "table now. Set a new job_name to run this spec again"
        )


def _output_summary(spec: JobSpec, layout: OutputLayout, plan: Plan) -> dict[str, Any]:
    """Where the rows went (partitions, table) and which input version they came from."""
    out: dict[str, Any] = {"partition_by": list(layout.partition_by)}
    if plan.source:  # how the input was read: a table's version, the filter, the increment
        out["source"] = readable_source(plan.source)
    if layout.is_table:
        out["table"] = {
            "format": layout.table_format,
            "location": spec.output.path,
            "identifier": spec.output.table,
            "mode": spec.output.mode,
            "job_key": layout.job_key,
        }
    return out


def _commit(
    spec: JobSpec, prepared: Prepared, heartbeat: Heartbeat, results: dict[str, ShardResult]
) -> dict[str, Any]:
    """The one table commit, between the last marker and _SUCCESS (idempotent)."""
    _exit_if_asked("before_table_commit")
    recorded = recorded_properties(heartbeat.record.run_id, prepared.fingerprint, prepared.plan)
    started = time.perf_counter()
    try:
        since = bool(increment_key(prepared.plan.source))
        result = commit_table(
            spec.output,
            prepared.layout,
            prepared.plan,
            results,
            recorded,
            spec.input.id_column if since else "",
        )
    except TableCommitError as exc:
        raise JobFailed(
            f"every shard is done but the table commit failed: {exc}. Rerun the same command "
            "to commit (no shard is redone)"
        ) from None
    log.info(
        "table_committed" if result.committed_now else "table_commit_found",
        format=result.format,
        version=result.version,
        added=result.added_files,
        removed=result.removed_files,
        rows_replaced=result.rows_replaced,
        seconds=round(time.perf_counter() - started, 2),
    )
    _exit_if_asked("after_table_commit")
    return result.to_dict()


def _exit_if_asked(point: str) -> None:
    if os.environ.get(EXIT_AT_ENV) == point:
        log.warning("driver_exit_for_test", point=point)
        os._exit(_EXIT_STATUS)


def summarize(
    spec: JobSpec, fingerprint: str, rows_in: int, shards: int, results: dict[str, ShardResult]
) -> dict[str, Any]:
    by_status: Counter[str] = Counter()
    source_tokens = 0
    for result in results.values():
        by_status.update(result.status_counts)
        source_tokens += result.source_tokens
    ok = sum(by_status[s] for s in row_status.TRANSLATED)
    failed = sum(by_status[s] for s in row_status.ERRORS)
    return {
        "job_name": spec.job_name,
        "fingerprint": fingerprint,
        "model": spec.model.name_or_path,
        "quantization": spec.model.quantization,
        # What the replicas decoded with (auto resolves per replica).
        "backend": ", ".join(sorted({r.backend for r in results.values() if r.backend}))
        or spec.model.backend,
        "source_lang": spec.source_lang,
        "target_lang": spec.target_lang,
        "id_column": spec.input.id_column,  # for the report's flagged rows
        "text_column": spec.input.text_column,
        "shards": shards,
        "shards_done": len(results),
        "rows_in": rows_in,
        "rows_out": sum(by_status.values()),
        "ok": ok,
        "failed": failed,  # model or data errors; `empty` rows are in by_status only
        "by_status": dict(sorted(by_status.items())),
        "source_tokens": source_tokens,
        # Row-level QE over every row (flags, fallback re-translations and wins).
        "qe": QeCounts.total([r.qe for r in results.values() if r.qe is not None]).to_dict(),
        "memory": ShardResult.memory_total(results.values()),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _actor_env(layout: OutputLayout, generation: int) -> dict[str, str]:
    """What every replica is handed: the lease generation (fencing), and where shard files
    go (the frozen plan's partition columns, a table output's job key)."""
    where = {"partition_by": list(layout.partition_by), "job_key": layout.job_key}
    return {GENERATION_ENV: str(generation), LAYOUT_ENV: json.dumps(where)}


def _new_actor(spec: JobSpec, shape: PoolShape, base_dir: str, env: dict[str, str]) -> Any:
    remote_cls = ray.remote(TranslatorActor)
    options: dict[str, Any] = {
        "num_gpus": shape.num_gpus,
        "num_cpus": shape.num_cpus,
        # Restarts are the driver's: a dead replica is replaced and its shard re-queued,
        # counted against workers.max_shard_attempts.
        "max_restarts": 0,
        "max_task_retries": 0,
        # Replicas on different nodes where the cluster has them: a lost node then takes
        # fewer replicas with it, and the survivors retry its shards.
        "scheduling_strategy": "SPREAD",
    }
    runtime_env = actor_runtime_env(env)
    if runtime_env:
        options["runtime_env"] = runtime_env
    return remote_cls.options(**options).remote(spec.model_dump_json(), base_dir, shape.threads)


def _start_pool(spec: JobSpec, shape: PoolShape, base_dir: str, env: dict[str, str]) -> list[_Slot]:
    """Start every replica and wait until each has loaded its model.

    A model that cannot load is a configuration error, not a shard failure: it stops
    the job before any shard is attempted, with the replica's own error message.
    """
    handles = [_new_actor(spec, shape, base_dir, env) for _ in range(shape.num_workers)]
    try:
        # Returns once every replica has loaded its model (or one failed to).
        ray.get([h.info.remote() for h in handles], timeout=_ACTOR_START_TIMEOUT_S)
    except RayActorError as exc:
        for handle in handles:
            ray.kill(handle)
        load_error = _load_error(exc)
        if load_error is not None:
            raise load_error from None
        raise JobFailed(f"a worker could not start: {_root_cause(exc)}") from None
    except GetTimeoutError:
        raise JobFailed(
            f"workers did not start within {_ACTOR_START_TIMEOUT_S:.0f}s; the cluster may "
            f"lack the resources asked for ({shape.describe()})"
        ) from None
    # What each replica logged while loading (its `replica_loaded` line among them).
    for index, events in enumerate(ray.get([h.events.remote() for h in handles])):
        for event in events:
            replay(event, worker=index)
    return [_Slot(i, h) for i, h in enumerate(handles)]


def _run_pool(
    spec: JobSpec,
    layout: OutputLayout,
    heartbeat: Heartbeat,
    pending: list[Shard],
    shape: PoolShape,
    base_dir: str,
    progress: Progress,
    timings: Timings,
) -> dict[str, str]:
    """Dispatch shards to idle replicas until all are committed or out of attempts."""
    queue: deque[Shard] = deque(pending)
    mark = time.perf_counter()
    progress.start_phase(f"loading the model on {shape.num_workers} worker(s)")
    slots = _start_pool(spec, shape, base_dir, _actor_env(layout, heartbeat.record.generation))
    timings.pool_start = time.perf_counter() - mark
    timings.workers = len(slots)
    progress.start_translation()
    try:
        return _dispatch(spec, layout, heartbeat, queue, slots, shape, base_dir, progress, timings)
    finally:
        for slot in slots:
            ray.kill(slot.handle)


def _dispatch(
    spec: JobSpec,
    layout: OutputLayout,
    heartbeat: Heartbeat,
    queue: deque[Shard],
    slots: list[_Slot],
    shape: PoolShape,
    base_dir: str,
    progress: Progress,
    timings: Timings,
) -> dict[str, str]:
    attempts: Counter[str] = Counter()
    failed: dict[str, str] = {}
    env = _actor_env(layout, heartbeat.record.generation)  # for replacements of dead replicas
    max_attempts = spec.workers.max_shard_attempts
    loop_start = busy_from = time.perf_counter()
    while queue or any(s.ref is not None for s in slots):
        if heartbeat.lost is not None:  # taken over: stop dispatching, our work is fenced
            raise heartbeat.lost
        for slot in slots:
            if slot.ref is None and queue:
                slot.shard = queue.popleft()
                attempts[slot.shard.shard_id] += 1
                slot.ref = slot.handle.process_shard.remote(
                    slot.shard, attempts[slot.shard.shard_id]
                )
        by_ref = {s.ref: s for s in slots if s.ref is not None}
        timings.driver_busy += time.perf_counter() - busy_from
        ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=1.0)
        busy_from = time.perf_counter()
        progress.tick()
        for ref in ready:
            slot = by_ref[ref]
            shard = slot.shard
            assert shard is not None
            slot.ref, slot.shard = None, None
            try:
                result: ShardResult = ray.get(ref)
            except RayActorError as exc:
                reason = f"worker died: {_root_cause(exc)}"
                log.warning("worker_died", shard=shard.shard_id, attempt=attempts[shard.shard_id])
                slot.handle = _replace(slot.handle, spec, shape, base_dir, env)
            except RayTaskError as exc:
                reason = f"shard raised: {_root_cause(exc)}"
                log.warning("shard_error", shard=shard.shard_id, error=reason)
            else:
                for event in result.events:
                    replay(event, worker=slot.index)
                heartbeat.check()  # LeaseLostError: the shard is not ours to commit any more
                mark_complete(layout, result, heartbeat.record)
                timings.worker_busy += result.seconds
                progress.shard_done(result)
                continue
            if attempts[shard.shard_id] < max_attempts:
                queue.appendleft(shard)  # retry first: its output is what resume waits on
            else:
                failed[shard.shard_id] = f"{attempts[shard.shard_id]} attempts; last: {reason}"
                log.error("shard_failed", shard=shard.shard_id, reason=failed[shard.shard_id])
    timings.driver_busy += time.perf_counter() - busy_from
    timings.translate = time.perf_counter() - loop_start
    return failed


def _replace(
    handle: Any, spec: JobSpec, shape: PoolShape, base_dir: str, env: dict[str, str]
) -> Any:
    """A fresh replica in place of a dead one (the dead one is killed for good)."""
    try:
        ray.kill(handle, no_restart=True)
    except Exception:  # noqa: BLE001 - it is already gone
        pass
    return _new_actor(spec, shape, base_dir, env)


def _load_error(exc: RayActorError) -> EngineLoadError | None:
    """The replica's EngineLoadError when its __init__ raised one (the model cannot load),
    else None (a node lost, a process killed: a worker problem, not the model's)."""
    cause: BaseException | None = getattr(exc, "cause", None)
    while isinstance(cause, RayTaskError):
        if isinstance(cause, EngineLoadError):  # Ray's dual class of the task's error
            break
        cause = cause.cause
    if isinstance(cause, EngineLoadError):
        lines = str(cause).strip().splitlines()
        return EngineLoadError(_without_class(lines[-1] if lines else ""))
    if exc.actor_init_failed and "EngineLoadError" in str(exc):
        return EngineLoadError(_without_class(_root_cause(exc)))
    return None


def _without_class(line: str) -> str:
    """Ray's last traceback line names the class first: the message alone reads better."""
    _, sep, message = line.partition("EngineLoadError: ")
    return (message if sep else line) or "the model could not be loaded"


def _root_cause(exc: BaseException) -> str:
    """The innermost error message, without Ray's multi-line traceback wrapper."""
    cause: BaseException = exc
    while isinstance(cause, RayTaskError) and cause.cause is not None:
        cause = cause.cause
    text = str(cause).strip().splitlines()
    return text[-1] if text else type(cause).__name__
