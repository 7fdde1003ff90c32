"""The package as users get it (issue #20): the wheel holds every module, an editable install
exposes no bare `pipeline`, and `batchmt submit` from the repository to a real Ray head whose
environment has batchmt installed from the wheel finishes with every row once.

Under the old layout (`batchmt/pipeline` etc. as links to top-level folders) the submit test
failed at once: Ray's upload skips linked folders, the staged `batchmt/` shadowed the installed
one on the head, and `batchmt.jobs` could not be imported.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: CI has the build backend in the venv and no index but the registry.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        cwd=out,
        capture_output=True,
    )
    (built,) = out.glob("batchmt-*.whl")
    return built


def test_the_wheel_holds_every_module(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "batchmt").rglob("*.py")}
    assert modules, "no modules found under batchmt/"
    assert sorted(modules - names) == []
    assert "batchmt/jobs/cli.py" in names and "batchmt/pipeline/spec.py" in names


def test_no_bare_room_is_importable(tmp_path: Path) -> None:
    """The editable install of this venv (and the repository) must not make `pipeline`,
    `workers` or `jobs` importable as top-level names."""
    probe = (
        "import importlib.util, json; "
        "print(json.dumps({n: importlib.util.find_spec(n) is not None "
        "for n in ('pipeline', 'workers', 'jobs', 'batchmt.pipeline.spec')}))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert json.loads(found.stdout) == {
        "pipeline": False,
        "workers": False,
        "jobs": False,
        "batchmt.pipeline.spec": True,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_group(head: subprocess.Popen[bytes], temp_dir: Path) -> None:
    """Stop this test's head only (never `ray stop`, which would stop every Ray on the
    machine): its process group, then any process still naming its temp folder."""
    try:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if str(temp_dir).encode() in cmdline:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("BATCHMT_REAL_HEAD") != "1",
    reason="a real Ray head (1-4 min, flaky on a busy machine): `make submit-check`",
)
def test_submit_from_the_repository_to_a_real_head_with_the_wheel_installed(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what `pip install batchmt-*.whl` puts in place
    temp_dir = Path("/tmp") / f"bmt-head-{os.getpid()}"  # short: Ray's socket paths are bounded
    port, dash = _free_port(), _free_port()
    # Token authentication on both sides, as a production head has it (Ray 2.5x+).
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(16).hex()}
    env = {
        **os.environ,
        **auth,
        # The head's batchmt is the wheel's (a path entry wins over the editable finder).
        "PYTHONPATH": str(site),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--dashboard-port={dash}",
            "--dashboard-host=127.0.0.1",
            "--num-cpus=2",
            "--num-gpus=0",
            f"--temp-dir={temp_dir}",
            "--include-dashboard=true",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        address = f"http://127.0.0.1:{dash}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", dash), timeout=1):
                    break
            except OSError:
                assert head.poll() is None, "ray start --head exited"
                assert time.monotonic() < deadline, "the head's dashboard never came up"
                time.sleep(1)
        # The config lives in the repository's ignored out/ folder: submit uploads it anyway.
        config_dir = REPO / "out" / f"submit-test-{os.getpid()}"
        config_dir.mkdir(parents=True, exist_ok=True)
        output = tmp_path / "output"
        config = config_dir / "job.yaml"
        config.write_text(
            "job_name: submit-real-head\nsource_lang: en\ntarget_lang: de\n"
            "input: {path: configs/demo/corpus.parquet}\n"
            f"output: {{path: {output}}}\n"
            "model: {name_or_path: models/demo-en-de}\n"
            "decoding: {num_beams: 1}\n"
            "workers: {num_workers: 1}\n"
            "sharding: {rows_per_shard: 20}\n",
            encoding="utf-8",
        )
        done = subprocess.run(
            [str(BIN / "batchmt"), "submit", str(config.relative_to(REPO)), "--address", address],
            cwd=REPO,
            env={**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **auth},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "No module named" not in done.stdout
    finally:
        _stop_group(head, temp_dir)
    ids = pq.read_table(output / "data").column("id").to_pylist()
    expected = pq.read_table(REPO / "configs/demo/corpus.parquet").column("id").to_pylist()
    assert sorted(ids) == sorted(expected)
    assert (output / "_SUCCESS").exists()
