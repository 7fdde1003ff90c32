"""What a person sees: a job under a pseudo-terminal prints one human stream (no JSON line,
no Ray or library warning), a row progress line with rows/s, and the summary last; with
stderr piped, only JSON lines without escape codes. Each job here starts its own local Ray,
as `batchmt run` does on a laptop, and runs under umask 022: every file it writes is 0644."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

pytestmark = pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux script")


def demo_config(tmp_path: Path) -> Path:
    config = {
        "job_name": "terminal",
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": str(REPO / "configs/demo/corpus.parquet")},
        "output": {"path": str(tmp_path / "out")},
        "model": {"name_or_path": str(REPO / "models/demo-en-de")},
        "decoding": {"num_beams": 1, "max_new_tokens": 64},
        "workers": {"num_workers": 1, "num_cpus": 1},
        "sharding": {"rows_per_shard": 12},
        "cache": {"path": str(tmp_path / "memory")},
        "quality": {"fallback": {"enabled": False}},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "BATCHMT_LOG"))}
    return {**env, "PYTHONPATH": str(REPO)}


def command(config: Path, *args: str) -> str:
    argv = [sys.executable, "-m", "batchmt.jobs.cli", *args, "run", str(config)]
    return "umask 022; exec " + shlex.join(argv)


def assert_files_follow_the_umask(tmp_path: Path) -> None:
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    files += [p for p in (tmp_path / "memory").rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"_SUCCESS", "_manifest.json"} <= names, names
    assert any(p.parent.name == "_lease" for p in files)
    assert any(p.parent.name == "_completions" for p in files)
    assert any(p.suffix == ".parquet" and "memory" in p.parts for p in files)
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o644"}, modes


def test_a_job_on_a_terminal_is_one_human_stream_with_the_summary_last(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["script", "-qec", command(demo_config(tmp_path)), "/dev/null"],
        cwd=tmp_path,  # relative paths play no part: the config's are absolute
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    text = proc.stdout
    assert proc.returncode == 0, text
    # Lines as a person sees them: each \r redraws the status line in place.
    shown = [ANSI.sub("", part).strip() for line in text.split("\n") for part in line.split("\r")]
    shown = [s for s in shown if s]
    assert not [s for s in shown if s.startswith("{")], "a JSON line on the terminal"
    for noise in ("Token authentication", "Started a local Ray", "sacremoses", "Warning"):
        assert noise not in text, noise
    assert not [s for s in shown if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s", s)]
    assert any(s.startswith("starting Ray") for s in shown)
    assert any(s.startswith("loading the model on 1 worker") for s in shown)
    assert any(re.search(r"translating [\d,]+/49 rows .*[\d.]+ rows/s \| ETA", s) for s in shown)
    # The workers' events, in the driver's format (no "(TranslatorActor pid=...)" prefix).
    assert any("replica_loaded" in s and "worker=0" in s for s in shown)
    assert "TranslatorActor" not in text
    summary = next(i for i, s in enumerate(shown) if s.startswith("batchmt: job 'terminal'"))
    assert shown[summary:][-1].startswith("timing:"), shown[summary:]
    assert not [s for s in shown[summary:] if "rows/s" in s or "[info" in s]
    assert_files_follow_the_umask(tmp_path)


def test_with_stderr_piped_every_line_is_json_without_escape_codes(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["sh", "-c", command(demo_config(tmp_path))],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr and "\x1b" not in proc.stdout
    events = [json.loads(line) for line in proc.stderr.splitlines()]  # each line is JSON
    names = [e["event"] for e in events]
    assert "replica_loaded" in names and "job_succeeded" in names
    committed = [e for e in events if e["event"] == "shard_committed"]
    assert committed[-1]["rows_done"] == 49 and committed[-1]["rows_per_s"] > 0
    assert proc.stdout.startswith("batchmt: job 'terminal' succeeded")


def test_log_level_warning_reaches_the_workers(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["sh", "-c", command(demo_config(tmp_path), "--log-level", "warning")],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no info line, from the driver or a worker
    assert proc.stdout.startswith("batchmt: job 'terminal' succeeded")
