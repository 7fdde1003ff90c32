"""One replica per GPU, each pinned to a distinct GPU, checked without GPUs: Ray declares
four logical GPUs and every actor must report its own id, computing on CPU because torch
sees no CUDA here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_each_replica_gets_its_own_gpu(tiny_marian: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.jobs.gpu_pinning_probe", str(tiny_marian)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["shape"]["num_workers"] == 4 and report["shape"]["num_gpus"] == 1
    infos = report["infos"]
    gpu_ids = [tuple(info["ray_gpu_ids"]) for info in infos]
    assert sorted(gpu_ids) == [("0",), ("1",), ("2",), ("3",)]
    assert sorted(info["cuda_visible_devices"] for info in infos) == ["0", "1", "2", "3"]
    assert {info["device"] for info in infos} == {"cpu"}
    assert len({info["pid"] for info in infos}) == 4
