"""Jobs that cannot start, or should not finish, say so in one line with the exit code the
README's table gives, before any translation (all through `batchmt` as a user runs it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchmt.jobs.cli import main

REPO = Path(__file__).resolve().parents[2]
DEMO_INPUT = str(REPO / "configs/demo/corpus.parquet")


def write_config(tmp_path: Path, **changes: Any) -> str:
    config: dict[str, Any] = {
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": DEMO_INPUT},
        "output": {"path": str(tmp_path / "out")},
        "model": {"name_or_path": str(REPO / "models/demo-en-de")},
        "decoding": {"num_beams": 1, "max_new_tokens": 64},
        "workers": {"num_workers": 1, "num_cpus": 1},
        "sharding": {"rows_per_shard": 25},
    }
    for key, value in changes.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("batchmt ")]
    assert len(lines) == 1, err
    assert not [line for line in err.splitlines() if "Traceback" in line], err
    return lines[0]


def test_a_language_name_is_refused_naming_the_tag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", write_config(tmp_path), "--set", "target_lang=german"]) == 2
    message = one_line(capsys)
    assert "'german' is not a BCP 47 language tag" in message and "'de' (German)" in message
    assert not (tmp_path / "out").exists()


def test_a_target_the_marian_model_cannot_write_is_refused_before_the_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--log-level", "warning", "run", write_config(tmp_path, target_lang="fr")]) == 2
    message = one_line(capsys)
    assert "model" in message and "writes 'de', not 'fr'" in message
    assert "set target_lang: de" in message
    assert not (tmp_path / "out").exists()  # nothing claimed: the fixed rerun is a new job


def test_duplicate_keys_and_a_config_folder_are_refused_with_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = Path(write_config(tmp_path))
    config.write_text(config.read_text() + "target_lang: fr\n")
    assert main(["plan", str(config)]) == 2
    message = one_line(capsys)
    assert "job.yaml" in message and "'target_lang' appears twice" in message
    assert main(["plan", str(tmp_path)]) == 2
    assert "is a folder" in one_line(capsys)


def test_status_of_a_missing_path_or_a_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in one_line(capsys)
    assert main(["status", write_config(tmp_path)]) == 2
    assert "is a file" in one_line(capsys)


def test_object_storage_without_credentials_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role here
    config = write_config(tmp_path, input={"path": "s3://no-such-bucket/in.parquet"})
    assert main(["plan", config]) == 2
    assert "no credentials found" in one_line(capsys)


def test_an_unreachable_hub_model_is_named_before_the_output_is_claimed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the same answer as no network, at once
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    config = write_config(tmp_path, model={"name_or_path": "no-such-org/opus-mt-en-xx"})
    assert main(["run", config]) == 2
    message = one_line(capsys)
    assert "'no-such-org/opus-mt-en-xx'" in message and "HF_HUB_OFFLINE" in message
    assert not (tmp_path / "out").exists()


def test_status_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "_completions").mkdir(parents=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchmt.jobs.cli", "status", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head` that has read all it wanted
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err


@pytest.mark.usefixtures("ray_local")
def test_too_many_flagged_rows_fail_with_max_flag_rate_and_warn_without(
    tmp_path: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Random weights: QE flags nearly every row."""
    config = write_config(
        tmp_path,
        model={"name_or_path": str(tiny_marian), "max_input_tokens": 40},
        decoding={"max_new_tokens": 16},
        quality={"fallback": {"enabled": False}},
    )
    assert main(["--log-level", "warning", "run", config, "--max-flag-rate", "0.5"]) == 1
    message = one_line(capsys)
    assert "more than quality.max_flag_rate 50.0%" in message
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    # Without the limit the same output finishes (nothing translated again), with a warning.
    assert main(["--log-level", "warning", "run", config]) == 0
    summary = capsys.readouterr().out
    assert "WARNING:" in summary and "were flagged by quality checks" in summary
    assert "resumed: 2 shard(s) were done, 0 run now" in summary or "already complete" in summary
    assert (tmp_path / "out" / "_SUCCESS").exists()
