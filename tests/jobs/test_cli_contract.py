"""Issue #15, finding 5: a job that cannot start exits 2 with one line, before it claims its
output; and `verify` prints ids without letting them drive the terminal (finding 6)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from batchmt.jobs.cli import main
from batchmt.pipeline.status import TRANSLATED
from tests.tiny_models import build_tiny_m2m100


def config(tmp_path: Path, model: Path | str, **sections: Any) -> str:
    data: dict[str, Any] = {
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": str(tmp_path / "in")},
        "output": {"path": str(tmp_path / "out")},
        "model": {"name_or_path": str(model), "max_input_tokens": 40},
        "decoding": {"num_beams": 1, "max_new_tokens": 8},
        "workers": {"num_workers": 1},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def write_input(tmp_path: Path, table: pa.Table | None = None) -> None:
    (tmp_path / "in").mkdir(exist_ok=True)
    table = table or pa.table({"id": ["a", "b"], "text": ["a man is walking.", "a dog runs."]})
    pq.write_table(table, tmp_path / "in" / "part.parquet")


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def fake_model(folder: Path, config_text: str) -> Path:
    """A model folder as the driver sees it: config and a weights file (never loaded)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(config_text)
    (folder / "model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")  # no tensors
    return folder


def without_weights(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "marian", "is_encoder_decoder": true}')
    return folder


def test_output_path_that_is_a_file_is_refused(
    tmp_path: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_input(tmp_path)
    (tmp_path / "out").write_text("not a folder")
    err = refused(capsys, ["run", config(tmp_path, tiny_marian)])
    assert "output.path" in err and "is a file" in err
    blocked = {"path": str(tmp_path / "out" / "below")}  # a folder under that file
    err = refused(capsys, ["run", config(tmp_path, tiny_marian, output=blocked)])
    assert "is a file" in err


def test_output_inside_the_input_folder_is_refused(
    tmp_path: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_input(tmp_path)
    inside = {"path": str(tmp_path / "in" / "translated")}
    err = refused(capsys, ["run", config(tmp_path, tiny_marian, output=inside)])
    assert "inside input.path" in err
    assert not (tmp_path / "in" / "translated").exists()


@pytest.mark.parametrize(
    ("what", "make"),
    [
        ("missing", lambda p: p / "nowhere"),
        ("broken config", lambda p: fake_model(p / "m", "{not json")),
        ("no weights", lambda p: without_weights(p / "m")),
    ],
)
def test_a_broken_model_fails_before_the_output_is_claimed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str, make: Any
) -> None:
    write_input(tmp_path)
    err = refused(capsys, ["run", config(tmp_path, make(tmp_path))])
    assert "model" in err
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_a_truncated_weights_file_fails_before_the_output_is_claimed(
    tmp_path: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_input(tmp_path)
    model = tmp_path / "model"
    shutil.copytree(tiny_marian, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a cut download
    err = refused(capsys, ["run", config(tmp_path, model)])
    assert "model.safetensors" in err and "broken" in err
    assert not (tmp_path / "out" / "_manifest.json").exists()


@pytest.mark.usefixtures("ray_local")
def test_the_fixed_rerun_after_a_missing_model_runs_and_dictionary_text_is_translated(
    tmp_path: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = pa.array(["a man is walking.", "a dog runs.", "a man is walking."])
    write_input(tmp_path, pa.table({"id": ["a", "b", "c"], "text": texts.dictionary_encode()}))
    refused(capsys, ["run", config(tmp_path, tmp_path / "typo")])
    assert main(["run", config(tmp_path, tiny_marian), "--no-progress"]) == 0
    rows = ds.dataset(tmp_path / "out" / "data", format="parquet").to_table().to_pylist()
    assert sorted(r["id"] for r in rows) == ["a", "b", "c"]
    assert all(r["status"] in TRANSLATED for r in rows)


def test_a_boolean_is_not_a_beam_count(
    tmp_path: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_input(tmp_path)
    err = refused(
        capsys, ["plan", config(tmp_path, tiny_marian), "--set", "decoding.num_beams=true"]
    )
    assert "decoding.num_beams" in err


def test_a_target_language_a_decoder_only_model_cannot_produce_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_input(tmp_path)
    model = fake_model(
        tmp_path / "hy", json.dumps({"model_type": "hunyuan_v1_dense", "is_encoder_decoder": False})
    )
    err = refused(capsys, ["run", config(tmp_path, model, target_lang="tlh")])
    assert "target_lang" in err and "tlh" in err
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_a_target_language_m2m100_cannot_produce_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_input(tmp_path)
    model = build_tiny_m2m100(tmp_path / "m2m")
    capsys.readouterr()  # the builder's progress bars
    err = refused(capsys, ["run", config(tmp_path, model, target_lang="tlh")])
    assert "target_lang" in err and "'tlh'" in err
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_verify_escapes_ids_and_speaks_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = ["plain", "red\x1b[31mALERT", "flip\u202etxt"]
    write_input(tmp_path, pa.table({"id": ids, "text": ["x", "y", "z"]}))
    job = config(tmp_path, tmp_path / "unused")
    assert main(["verify", job]) == 1  # nothing translated yet: every id is missing
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert "red\\x1b[31mALERT" in out and "flip\\u202etxt" in out
    assert main(["verify", job, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["missing_count"] == 3
    assert sorted(report["missing_ids"]) == sorted(ids)
