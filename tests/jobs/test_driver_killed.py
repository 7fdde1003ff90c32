"""Kill the driver process mid-job (SIGKILL, no cleanup), start it again with the same
spec: completed shards are skipped, the rest finish, every id comes back once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds

from tests.jobs.corpora import corpus_table, local_job_config

REPO = Path(__file__).resolve().parents[2]


def batchmt(config: Path, *, wait: bool = True) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchmt.jobs.cli", "run", str(config), "--no-progress"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: we can clean up its local Ray
    )
    if wait:
        proc.wait(timeout=600)
    return proc


def test_driver_killed_after_two_shards_resumes_without_redoing_them(
    tiny_marian: Path, tmp_path: Path
) -> None:
    table = corpus_table(1200, docs=40)
    import pyarrow.parquet as pq

    pq.write_table(table, tmp_path / "in.parquet", row_group_size=100)
    out = tmp_path / "out"
    config = local_job_config(
        tmp_path,
        tiny_marian,
        model={"max_input_tokens": 40},
        decoding={"num_beams": 4, "max_new_tokens": 24},
        workers={"num_workers": 1, "num_cpus": 1},
        sharding={"rows_per_shard": 60},
    )
    first = batchmt(config, wait=False)
    completions = out / "_completions"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if completions.exists() and len(list(completions.iterdir())) >= 2:
                break
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        try:  # the killed driver's local Ray processes
            os.killpg(first.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    done_before = {p.name: p.read_text() for p in completions.iterdir()}
    assert 2 <= len(done_before) < 20, "the driver was not killed mid-job"
    assert not (out / "_SUCCESS").exists()

    second = batchmt(config)
    try:
        stdout = second.stdout.read() if second.stdout else ""
        assert second.returncode == 0, second.stderr.read() if second.stderr else ""
    finally:
        try:
            os.killpg(second.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert f"resumed: {len(done_before)} shard(s) were done" in stdout
    for name, body in done_before.items():
        assert (completions / name).read_text() == body  # not redone
    assert (out / "_SUCCESS").exists()
    ids = ds.dataset(out / "data", format="parquet").to_table(columns=["id"]).column("id")
    assert sorted(ids.to_pylist()) == table.column("id").to_pylist()
