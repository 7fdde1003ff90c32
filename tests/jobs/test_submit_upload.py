"""Issue #15, finding 7: `batchmt submit` uploads neither secrets nor gitignored files, says
what it uploads, and keeps `--set` values off the job's command line and the screen."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchmt.jobs.cli import main
from batchmt.jobs.submission.submit import OVERRIDES_FILE, submit
from batchmt.jobs.submission.upload import select

SECRET = "s3cr3t-token-value"


def project(root: Path) -> Path:
    """A project folder as people have them: code, config, and secrets lying around."""
    files = {
        "configs/job.yaml": yaml.safe_dump(
            {
                "source_lang": "en",
                "target_lang": "de",
                "input": {"path": "in.parquet"},
                "output": {"path": "out"},
                "model": {"name_or_path": "models/demo"},
            }
        ),
        "models/demo/config.json": "{}",
        "README.md": "hello",
        ".gitignore": "*.log\n/scratch/\n!keep.log\n",
        "run.log": "noise",
        "keep.log": "wanted",
        "scratch/big.bin": "x" * 1000,
        "pkg/.gitignore": "local.txt\n",
        "pkg/local.txt": "only here",
        "pkg/code.py": "print(1)",
        ".env": f"TOKEN={SECRET}",
        ".aws/credentials": f"aws_secret_access_key={SECRET}",
        ".ssh/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----",
        ".netrc": f"machine x password {SECRET}",
        "deploy/server.pem": "key",
        ".venv/lib/site.py": "env",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_selection_honours_gitignore_and_never_takes_secrets(tmp_path: Path) -> None:
    selection = select(project(tmp_path))
    assert selection.files == [
        ".gitignore",
        "README.md",
        "configs/job.yaml",
        "keep.log",
        "models/demo/config.json",
        "pkg/.gitignore",
        "pkg/code.py",
    ]
    assert set(selection.secrets) == {
        ".env",
        ".aws/",
        ".ssh/",
        ".netrc",
        "deploy/server.pem",
    }


class RecordingClient:
    """Stands in for the Ray Jobs API: records what submit_job received, and the files of
    its working_dir at that moment (Ray packs and uploads them inside submit_job)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def submit_job(self, **kwargs: Any) -> str:
        folder = Path(kwargs["runtime_env"]["working_dir"])
        uploaded = {
            p.relative_to(folder).as_posix(): p.read_text()
            for p in folder.rglob("*")
            if p.is_file()
        }
        self.calls.append({**kwargs, "uploaded": uploaded})
        return "raysubmit_test"


def test_submit_uploads_the_selection_and_passes_set_values_in_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(project(tmp_path))
    client = RecordingClient()
    overrides = [f"input.storage_options.secret={SECRET}", "decoding.num_beams=2"]
    code = submit("configs/job.yaml", overrides, "http://head:8265", wait=False, client=client)
    assert code == 0
    (call,) = client.calls
    uploaded = call["uploaded"]
    assert "configs/job.yaml" in uploaded and "pkg/code.py" in uploaded
    assert not any(SECRET in text for name, text in uploaded.items() if name != OVERRIDES_FILE)
    assert not {".env", ".aws/credentials", ".ssh/id_rsa", ".netrc", "run.log"} & set(uploaded)
    assert json.loads(uploaded[OVERRIDES_FILE]) == overrides
    assert SECRET not in call["entrypoint"] and SECRET not in json.dumps(call["metadata"])
    assert "--set-file" in call["entrypoint"]
    out = capsys.readouterr().out
    assert SECRET not in out
    assert "uploading 7 file(s)" in out and "left out as secrets: 5" in out
    assert not Path(call["runtime_env"]["working_dir"]).exists()  # staging removed


def test_the_set_file_the_cluster_reads_applies_like_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.chdir(project(tmp_path))
    pq.write_table(pa.table({"id": [str(i) for i in range(6)], "text": ["x"] * 6}), "in.parquet")
    overrides = tmp_path / "o.json"
    overrides.write_text(json.dumps(["sharding.rows_per_shard=2"]))
    assert main(["plan", "configs/job.yaml", "--json", "--set-file", str(overrides)]) == 0
    assert len(json.loads(capsys.readouterr().out)["shards"]) == 3


def test_a_config_outside_the_working_folder_is_refused_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path / "p")
    monkeypatch.chdir(tmp_path / "p" / "pkg")
    code = main(["submit", os.path.join("..", "configs", "job.yaml"), "--address", "http://x"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "outside the working folder" in err
