"""Joining Ray and sizing the actor pool: one replica per GPU, else one per CPU slot."""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from typing import Any

import ray
import structlog

from batchmt.jobs.ray.watchdog import start_watchdog
from batchmt.pipeline.logs import adopt_logger
from batchmt.pipeline.spec import JobSpec
from batchmt.pipeline.storage.fs import StorageError
from batchmt.workers.faults import FAULT_MARKER_ENV, FAULT_SHARD_ENV

log = structlog.get_logger(__name__)

# Environment a driver hands to its actors (fault injection for tests, log level, cache).
_FORWARDED_ENV = (FAULT_SHARD_ENV, FAULT_MARKER_ENV, "BATCHMT_LOG_LEVEL", "BATCHMT_CACHE")


# The watchdog of a local Ray this process started (jobs/ray/watchdog.py); held for the
# process's life because its stdin pipe is what tells the watchdog the driver still lives.
_watchdog: subprocess.Popen[bytes] | None = None


def actor_runtime_env(extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Per-actor runtime_env carrying the forwarded variables that are set in the driver,
    plus `extra` (the driver's lease generation, see pipeline/outputs/lease.py).

    Per actor rather than per ray.init: a reused Ray instance (tests, notebooks) started
    before the variables were set still hands them to new actors.
    """
    env = {k: v for k in _FORWARDED_ENV if (v := os.environ.get(k)) is not None}
    env.update(extra or {})
    return {"env_vars": env} if env else {}


def connect(spec: JobSpec) -> None:
    """Join the cluster named by `ray.address` / RAY_ADDRESS, else start a local one.

    Under `ray job submit` Ray itself sets RAY_ADDRESS, so the same command works there.
    An already-initialised Ray (tests, notebooks) is reused as it is.

    Logging is batchmt's (pipeline/logs.py): Ray's own logger goes through the job's one
    handler (errors only for a local instance, whose start-up notices are noise; warnings
    too on a cluster), and actors' output is not forwarded (log_to_driver=False): their
    events travel back with each shard result. What an actor prints outside them stays
    in Ray's worker logs (`ray logs`, /tmp/ray/session_latest/logs/worker-*.err).
    """
    global _watchdog
    if ray.is_initialized():
        return
    address = spec.ray.address or os.environ.get("RAY_ADDRESS")
    adopt_logger("ray", logging.WARNING if address else logging.ERROR)
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        # address="local": a new instance of our own. Without it ray.init() joins whatever
        # Ray already runs on this machine (another user's, a test cluster), so the job's
        # local paths could be read on nodes that cannot see them. The dashboard is for
        # clusters; a local job starts faster without it.
        ray.init(
            address="local",
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        # A SIGKILLed driver would otherwise leave Ray's agents running (ray_watchdog.py).
        _watchdog = start_watchdog()
    resources = ray.cluster_resources()
    log.info(
        "ray_connected",
        address=address or "local",
        cpus=resources.get("CPU", 0),
        gpus=resources.get("GPU", 0),
    )


def _is_node_local(url: str) -> bool:
    return "://" not in url or url.startswith(("file://", "local://"))


def check_paths_reachable(spec: JobSpec, nodes: list[dict[str, Any]]) -> None:
    """Refuse node-local input/output paths on a cluster of more than one node.

    A worker on another node would read an empty or different folder, or write output the
    driver never sees: refuse before any actor starts. (A folder every node mounts at the
    same path is a shared filesystem that Ray cannot tell apart; use object storage.)
    """
    alive = [n for n in nodes if n.get("Alive")]
    if len(alive) < 2:
        return
    inputs = ("input.path", spec.input.path)
    if not spec.input.path and spec.input.catalog is not None:
        # A catalog table: its files live under the catalog's warehouse.
        warehouse = spec.input.catalog.properties.get("warehouse", "")
        inputs = ("input.catalog.properties.warehouse", warehouse)
    for key, url in (inputs, ("output.path", spec.output.path)):
        if url and _is_node_local(url):
            raise StorageError(
                f"{key} {url!r} is a node-local path, but the Ray cluster has {len(alive)} "
                "nodes: workers on other nodes cannot see it. Use object storage "
                "(s3://bucket/prefix, with input/output.storage_options) on a cluster"
            )


@dataclass(frozen=True)
class PoolShape:
    num_workers: int
    num_gpus: int  # per worker: 1 or 0
    num_cpus: int  # per worker, reserved in Ray
    threads: int  # torch threads per worker

    def describe(self) -> str:
        per = "1 GPU" if self.num_gpus else f"{self.num_cpus} CPU"
        return f"{self.num_workers} worker(s) x {per}"


def pool_shape(spec: JobSpec, pending_shards: int, resources: dict[str, float]) -> PoolShape:
    """How many actors, and what each reserves, given the cluster's resources."""
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    wanted = spec.workers.num_workers
    if gpus:
        workers = min(wanted or gpus, gpus)
        # Tokenizing and writing need a little CPU; never reserve more than exists.
        per_cpu = min(spec.workers.num_cpus, cpus // workers)
        shape = PoolShape(workers, 1, per_cpu, max(1, per_cpu))
    else:
        default = max(1, cpus // spec.workers.num_cpus)
        workers = wanted or default
        per_cpu = max(1, min(spec.workers.num_cpus, cpus // workers))
        if workers * per_cpu > cpus:
            log.warning(
                "workers_capped", asked=workers, cpus=cpus, reason="fewer CPU slots than workers"
            )
            workers = cpus // per_cpu
        shape = PoolShape(workers, 0, per_cpu, per_cpu)
    return PoolShape(
        max(1, min(shape.num_workers, pending_shards)),
        shape.num_gpus,
        shape.num_cpus,
        shape.threads,
    )
