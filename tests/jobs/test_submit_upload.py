"""Issue #15, finding 7: `batchmt submit` uploads neither secrets nor gitignored files, says
what it uploads, and keeps `--set` values off the job's command line and the screen."""

from __future__ import annotations

import json
import os
import re
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
    # .gitignore files are applied here and stay home: Ray would apply them again.
    assert selection.files == [
        "README.md",
        "configs/job.yaml",
        "keep.log",
        "models/demo/config.json",
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
    assert "left out as secrets (never uploaded): 5" in out
    assert out.index("left out as secrets") < out.index("uploading from")
    assert re.search(r"\n  total +5 file\(s\)", out)  # the two .gitignore files stay home
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


def test_links_are_never_followed_and_usual_secrets_stay_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #23, finding 5: a link to a private key outside the folder, a linked folder,
    and the secret files people keep beside their code (the brief's list) are not uploaded;
    a model's tokenizer files are; the list shows folders and the total."""
    outside = tmp_path / "outside"
    (outside / "keys").mkdir(parents=True)
    (outside / "id_ed25519").write_text(f"PRIVATE {SECRET}")
    (outside / "keys" / "prod.txt").write_text(f"PRIVATE {SECRET}")
    root = project(tmp_path / "p")
    (root / "notes.txt").symlink_to(outside / "id_ed25519")
    (root / "pkg" / "keys").symlink_to(outside / "keys", target_is_directory=True)
    secrets = {
        "secrets.yaml": "db: x",
        "gcp-sa.json": '{"type": "service_account"}',
        "deploy/my-service-account.json": "{}",
        "kubeconfig": "apiVersion: v1",
        "api_token.txt": SECRET,
        "conf/app-credentials.json": "{}",
        "conf/.token": SECRET,
        "certs/ca.pem": "key",
    }
    model_files = {
        "models/demo/tokenizer_config.json": "{}",
        "models/demo/special_tokens_map.json": "{}",
        "models/demo/added_tokens.json": "{}",
        "models/demo/tokenizer.json": "{}",
    }
    for name, text in {**secrets, **model_files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.chdir(root)
    client = RecordingClient()
    code = submit("configs/job.yaml", [], "http://head:8265", wait=False, client=client)
    assert code == 0
    uploaded = client.calls[-1]["uploaded"]
    assert not any(SECRET in text or "PRIVATE" in text for text in uploaded.values())
    assert not {"notes.txt", "pkg/keys/prod.txt"} & set(uploaded)
    assert not set(secrets) & set(uploaded)
    assert set(model_files) <= set(uploaded)
    out = capsys.readouterr().out
    assert "left out as symbolic links (targets never uploaded): 2 (notes.txt, pkg/keys/)" in out
    models = sum(1 for name in uploaded if name.startswith("models/demo/"))
    assert re.search(rf"\n  models/demo/ +{models} file\(s\)", out)
    assert re.search(rf"\n  total +{len(uploaded)} file\(s\)", out)


def test_code_about_tokens_is_uploaded_and_token_files_are_not(tmp_path: Path) -> None:
    """`*token*` catches api_token.txt, not benchmarks/first_token.py (code the job needs)."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "first_token.py").write_text("print(1)\n")
    (tmp_path / "api_token.txt").write_text("s3cr3t\n")
    selection = select(tmp_path)
    assert "benchmarks/first_token.py" in selection.files
    assert "api_token.txt" in selection.secrets and "api_token.txt" not in selection.files
