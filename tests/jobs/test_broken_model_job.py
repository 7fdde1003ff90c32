"""A model that loads but cannot translate is never a success (local Ray, tiny Marian copies):

- every weight NaN (header intact): refused when the replica loads, exit 2 naming a tensor;
- a garbage `source.spm`: the replica cannot load it, exit 2;
either way the output is left unclaimed (no `_manifest.json`), so the rerun with the right
model runs, instead of being refused as "a different job spec";
- a model whose every translation is empty (EOS first): each row `failed` with a reason,
and the shard fails (exit 1 naming it) instead of being published with `_SUCCESS`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from batchmt.jobs.cli import main

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


def copy_model(tiny_marian: Path, folder: Path) -> Path:
    shutil.copytree(tiny_marian, folder)
    return folder


def rewrite_weights(folder: Path, change: Any) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    save_file({k: change(k, v) for k, v in tensors.items()}, str(path), metadata={"format": "pt"})


def config(tmp_path: Path, model: Path, **model_keys: Any) -> str:
    spec = {
        "job_name": "broken",
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": str(tmp_path / "in.parquet")},
        "output": {"path": str(tmp_path / "out")},
        "model": {"name_or_path": str(model), "max_input_tokens": 40, **model_keys},
        "decoding": {"num_beams": 1, "max_new_tokens": 8},
        "workers": {"num_workers": 1, "max_shard_attempts": 1},
        "quality": {"sample_per_shard": 1, "fallback": {"enabled": False}},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("batchmt ")]
    assert len(err) == 1, err
    return err[0]


def test_a_model_that_cannot_load_leaves_the_output_unclaimed(
    tmp_path: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [f"r{i}" for i in range(4)]
    pq.write_table(
        pa.table({"id": ids, "text": ["The house is small."] * 4}), tmp_path / "in.parquet"
    )

    nan = copy_model(tiny_marian, tmp_path / "nan-model")
    rewrite_weights(nan, lambda _k, v: torch.full_like(v, float("nan")))
    assert main(["run", config(tmp_path, nan), "--no-progress"]) == 2
    err = one_line(capsys)
    # Refused before the claim (the language canary loads a Marian model in the driver) or by
    # the replica, which then removes its fresh claim: either way no manifest is left.
    assert "NaN" in err and "tensor '" in err
    assert "EngineLoadError" not in err  # the message, not Ray's class path
    assert not (tmp_path / "out" / "_manifest.json").exists()

    garbage = copy_model(tiny_marian, tmp_path / "garbage-spm")
    (garbage / "source.spm").write_bytes(b"not a sentencepiece model" * 40)
    assert main(["run", config(tmp_path, garbage), "--no-progress"]) == 2
    assert "source.spm" in one_line(capsys)  # refused before the claim (preflight)
    assert not (tmp_path / "out" / "_manifest.json").exists()

    # The fixed rerun is a new job into the same output, not "a different job spec".
    assert main(["run", config(tmp_path, tiny_marian), "--no-progress"]) == 0
    assert (tmp_path / "out" / "_SUCCESS").exists()


def test_empty_translations_fail_the_shard(
    tmp_path: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [f"r{i}" for i in range(4)]
    pq.write_table(
        pa.table({"id": ids, "text": ["The house is small."] * 4}), tmp_path / "in.parquet"
    )
    mute = copy_model(tiny_marian, tmp_path / "mute-model")
    eos = int(yaml.safe_load((mute / "config.json").read_text())["eos_token_id"])

    def eos_first(key: str, value: torch.Tensor) -> torch.Tensor:
        if key.endswith("final_logits_bias"):
            value = value.clone()
            value[..., eos] = 1e4  # EOS wins every step: every translation is empty
        return value

    rewrite_weights(mute, eos_first)
    job = config(tmp_path, mute, backend="transformers")
    assert main(["run", job, "--no-progress"]) == 1
    err = one_line(capsys)
    assert "00000" in err and "came back empty" in err, err
    assert not (tmp_path / "out" / "_SUCCESS").exists()
