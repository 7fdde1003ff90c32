"""Joining Ray and sizing the actor pool: one replica per GPU, else one per CPU slot."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import ray
import structlog

from batchmt.pipeline.spec import JobSpec
from batchmt.workers.faults import FAULT_MARKER_ENV, FAULT_SHARD_ENV

log = structlog.get_logger(__name__)

# Environment a driver hands to its actors (fault injection for tests, log level, cache).
_FORWARDED_ENV = (FAULT_SHARD_ENV, FAULT_MARKER_ENV, "BATCHMT_LOG_LEVEL", "BATCHMT_CACHE")


def actor_runtime_env() -> dict[str, Any]:
    """Per-actor runtime_env carrying the forwarded variables that are set in the driver.

    Per actor rather than per ray.init: a reused Ray instance (tests, notebooks) started
    before the variables were set still hands them to new actors.
    """
    env = {k: v for k in _FORWARDED_ENV if (v := os.environ.get(k)) is not None}
    return {"env_vars": env} if env else {}


def connect(spec: JobSpec) -> None:
    """Join the cluster named by `ray.address` / RAY_ADDRESS, else start a local one.

    Under `ray job submit` Ray itself sets RAY_ADDRESS, so the same command works there.
    An already-initialised Ray (tests, notebooks) is reused as it is.
    """
    if ray.is_initialized():
        return
    address = spec.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # The dashboard is for clusters; a local job starts faster without it.
        ray.init(include_dashboard=False, log_to_driver=True)
    log.info("ray_connected", address=address or "local", resources=ray.cluster_resources())


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
