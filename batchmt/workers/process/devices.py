"""Which device this actor computes on: the GPU Ray assigned it, else its CPU slots."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass

import torch

from batchmt.workers.process.allocator import keep_freed_memory


@dataclass(frozen=True)
class Placement:
    device: str  # "cuda:0" or "cpu"
    ray_gpu_ids: list[str]
    cuda_visible_devices: str | None
    torch_threads: int
    pid: int
    allocator: str  # what workers/process/allocator.py did to this process's malloc

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# Python's GIL switch interval in a replica. Its one busy thread is the decode loop; the
# others (Ray's GC thread, tqdm's monitors) only wait. Eager decoding gives the GIL up around
# each of hundreds of small ops per step, and at the default 5 ms a waiting thread that
# wakes takes it over; at 100 ms the loop keeps it. Measured in the vLLM race's replica
# (256 rows, idle): `generate` 4.85 s mean of 5 runs against 5.20 s, 4 of 5 pairs faster.
_SWITCH_INTERVAL_S = 0.1


def assigned_gpu_ids() -> list[str]:
    """GPU ids Ray reserved for this actor (empty outside Ray or without num_gpus)."""
    try:
        import ray

        if not ray.is_initialized():
            return []
        return [str(g) for g in ray.get_gpu_ids()]
    except ImportError:
        return []


def place(num_cpus: int) -> Placement:
    """Pin this process to its assigned GPU, or size torch's thread pool to its CPU slots;
    either way give the decode loop the GIL for longer (`_SWITCH_INTERVAL_S`) and let
    malloc keep what each decode step frees (workers/process/allocator.py).

    Ray sets CUDA_VISIBLE_DEVICES to the assigned GPU, so inside the actor that GPU is
    always `cuda:0`; two replicas never share a GPU. Without CUDA (a CPU-only build or
    logical GPUs declared for testing) the replica falls back to CPU compute.
    """
    gpu_ids = assigned_gpu_ids()
    if gpu_ids and torch.cuda.is_available():
        device = "cuda:0"
        torch.cuda.set_device(0)
    else:
        device = "cpu"
    # Oversubscribed threads (torch defaults to every core on the node) make N actors
    # on one machine slower than one.
    torch.set_num_threads(max(1, num_cpus))
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    allocator = keep_freed_memory()
    return Placement(
        device=device,
        ray_gpu_ids=gpu_ids,
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        torch_threads=torch.get_num_threads(),
        pid=os.getpid(),
        allocator=allocator,
    )
