"""One output, one driver (issue #15): a second driver is refused while the first runs, even
with output.overwrite=true; a driver whose lease was taken over stops and its work does not
count; SIGTERM ends a run like Ctrl-C; a SIGKILLed driver leaves no local Ray behind."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from batchmt.jobs.cli import main
from tests.jobs.corpora import corpus_table, local_job_config
from tests.jobs.drivers import alive, descendants, kill_all, output, start_driver, wait_for


def _job(tmp_path: Path, model: Path, rows: int = 240, per_shard: int = 20) -> Path:
    pq.write_table(corpus_table(rows, awkward=False), tmp_path / "in.parquet", row_group_size=20)
    return local_job_config(
        tmp_path,
        model,
        decoding={"num_beams": 2, "max_new_tokens": 12},
        workers={"num_workers": 1, "num_cpus": 1},
        sharding={"rows_per_shard": per_shard},
    )


def _markers(out: Path) -> list[Path]:
    folder = out / "_completions"
    return sorted(folder.iterdir()) if folder.exists() else []


def _lease_files(out: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((out / "_lease").glob("*.json"))]


def _ids(out: Path) -> list[str]:
    table = ds.dataset(out / "data", format="parquet").to_table(columns=["id"])
    return sorted(table.column("id").to_pylist())


def test_second_driver_with_overwrite_is_refused_while_the_first_runs(
    tiny_marian: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _job(tmp_path, tiny_marian, rows=120)
    out = tmp_path / "out"
    first = start_driver(config)
    try:
        claimed = (out / "_manifest.json").exists
        wait_for("the first driver claims the output", claimed, first)
        code = main(["run", str(config), "--set", "output.overwrite=true", "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert "is in use by run" in err and f"pid {first.pid}" in err
        assert len(err.strip().splitlines()) == 1
        log = output(first)
        assert first.returncode == 0, log
    finally:
        kill_all(first, {})
    success = json.loads((out / "_SUCCESS").read_text())
    (lease,) = _lease_files(out)
    assert success["run_id"] == lease["run_id"] and lease["pid"] == first.pid
    assert lease["released"] is True
    assert _ids(out) == [f"r{i:05d}" for i in range(120)]
    assert main(["verify", str(config)]) == 0


def test_driver_that_lost_its_lease_stops_and_its_late_work_does_not_count(
    ray_local: None, tiny_marian: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _job(tmp_path, tiny_marian)
    out = tmp_path / "out"
    # A short lease, so that a frozen driver loses it within the test.
    first = start_driver(config, env={"BATCHMT_LEASE_TTL_S": "3"})
    try:
        wait_for("a committed shard", lambda: len(_markers(out)) >= 1, first)
        os.kill(first.pid, signal.SIGSTOP)  # a long GC pause, a partitioned host
        first_run = _lease_files(out)[-1]["run_id"]
        # Refused while the frozen driver's lease is still fresh, taken over once it expired.
        wait_for("the frozen driver's lease to expire", lambda: _expired(out), first)
        assert main(["run", str(config), "--no-progress"]) == 0
        assert "resumed:" in capsys.readouterr().out
        second_run = _lease_files(out)[-1]["run_id"]
        os.kill(first.pid, signal.SIGCONT)
        log = output(first)
    finally:
        kill_all(first, {})
    assert first.returncode == 1, log
    assert "lost the lease" in log and str(second_run) in log
    success = json.loads((out / "_SUCCESS").read_text())
    assert success["run_id"] == second_run and success["lease_generation"] == 2
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["runs"] == [first_run, second_run]
    for marker in _markers(out):
        run = json.loads(marker.read_text())["run_id"]
        assert run == second_run or manifest["carried"].get(marker.name) == first_run
    assert _ids(out) == [f"r{i:05d}" for i in range(240)]
    assert main(["verify", str(config)]) == 0


def _expired(out: Path) -> bool:
    lease = _lease_files(out)[-1]
    return time.time() > float(str(lease["heartbeat_at"])) + float(str(lease["ttl_s"]))


def test_sigterm_ends_the_run_like_ctrl_c_and_releases_the_lease(
    tiny_marian: Path, tmp_path: Path
) -> None:
    config = _job(tmp_path, tiny_marian)
    out = tmp_path / "out"
    driver = start_driver(config)
    try:
        wait_for("a committed shard", lambda: len(_markers(out)) >= 1, driver)
        driver.send_signal(signal.SIGTERM)
        log = output(driver)
    finally:
        kill_all(driver, {})
    assert driver.returncode == 130, log
    assert "interrupted; committed shards are kept and a rerun resumes" in log
    assert not (out / "_SUCCESS").exists()
    assert _lease_files(out)[-1]["released"] is True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigkilled_driver_leaves_no_local_ray_processes(tiny_marian: Path, tmp_path: Path) -> None:
    config = _job(tmp_path, tiny_marian)
    out = tmp_path / "out"
    driver = start_driver(config)
    ray_processes: dict[int, str] = {}
    try:
        wait_for("a committed shard", lambda: len(_markers(out)) >= 1, driver)
        ray_processes = {
            pid: start
            for pid, start in descendants(driver.pid).items()
            if "watchdog" not in _cmdline(pid)
        }
        assert any("raylet" in _cmdline(p) for p in ray_processes), ray_processes
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        deadline = time.monotonic() + 60
        while alive(ray_processes) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {pid: _cmdline(pid) for pid in alive(ray_processes)}
    finally:
        kill_all(driver, ray_processes)
    assert left == {}, f"still running after the driver died: {left}"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
