"""`batchmt run` end to end on a local Ray cluster, a tiny real Marian model, and both a
local folder and an S3 endpoint (moto's server) for input and output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
import yaml

from batchmt.jobs.cli import main
from batchmt.pipeline.status import EMPTY, OK, OK_SPLIT
from batchmt.pipeline.storage.fs import open_fs
from tests.conftest import StorageRoot
from tests.jobs.corpora import corpus_table

pytestmark = pytest.mark.usefixtures("ray_local")


def write_config(tmp_path: Path, **sections: Any) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(sections))
    return str(path)


def job_config(root: StorageRoot, model: Path, rows_per_shard: int = 40, **extra: Any) -> dict:
    config: dict[str, Any] = {
        "job_name": "test",
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": root.url_of("in"), "storage_options": root.storage_options},
        "output": {"path": root.url_of("out"), "storage_options": root.storage_options},
        "model": {"name_or_path": str(model), "max_input_tokens": 40},
        "decoding": {"num_beams": 2, "max_new_tokens": 16},
        "workers": {"num_workers": 2},
        "sharding": {"rows_per_shard": rows_per_shard},
        # Random weights: row-level QE flags nearly every row, and the QE fallback would
        # re-translate them all; these tests are about the shard path (the fallback has its
        # own, tests/jobs/test_quality_jobs.py).
        "quality": {"sample_per_shard": 5, "fallback": {"enabled": False}},
    }
    for key, value in extra.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def read_output(root: StorageRoot) -> list[dict[str, Any]]:
    fs, path = open_fs(root.url_of("out", "data"), root.storage_options)
    return ds.dataset(path, filesystem=fs, format="parquet").to_table().to_pylist()


def read_json(root: StorageRoot, *parts: str) -> Any:
    fs, path = open_fs(root.url_of("out", *parts), root.storage_options)
    return json.loads(fs.cat_file(path))


def test_job_translates_every_row_once(
    storage_root: StorageRoot, tiny_marian: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = corpus_table(300, docs=30)
    table = table.append_column("reference", table.column("text"))
    storage_root.write_parquet("in/part-0.parquet", table.slice(0, 170), row_group_size=50)
    storage_root.write_parquet("in/part-1.parquet", table.slice(170), row_group_size=50)
    config = write_config(tmp_path, **job_config(storage_root, tiny_marian, context={"window": 2}))

    assert main(["run", config, "--no-progress"]) == 0
    assert "succeeded" in capsys.readouterr().out

    rows = read_output(storage_root)
    assert sorted(r["id"] for r in rows) == table.column("id").to_pylist()
    by_id = {r["id"]: r for r in rows}
    for source in table.to_pylist():
        out = by_id[source["id"]]
        assert out["lang_hint"] == "en" and out["priority"] == source["priority"]
        assert out["doc_id"] == source["doc_id"] and out["text"] == source["text"]
        if out["status"] in (OK, OK_SPLIT):
            assert isinstance(out["translation"], str)
        else:
            assert out["error"], out
    statuses = {r["status"] for r in rows}
    assert {OK, EMPTY, OK_SPLIT} <= statuses
    success = read_json(storage_root, "_SUCCESS")
    assert success["rows_in"] == 300 and success["rows_out"] == 300
    assert success["ok"] + success["failed"] + success["by_status"][EMPTY] == 300
    assert success["by_status"][EMPTY] == 3

    quality = read_json(storage_root, "quality", "00000.json")
    assert quality == read_json(storage_root, "quality", "00000.json")
    assert quality["sample_size"] == 5 and len(quality["samples"]) == 5
    assert quality["reference"]["segments"] >= 1 and "bleu_stats" in quality["reference"]
    assert quality["signature"]["model"] == str(tiny_marian)

    assert main(["verify", config]) == 0
    assert (
        main(
            ["status", storage_root.url_of("out")]
            + [f"--storage-option={k}={v}" for k, v in storage_root.storage_options.items()]
        )
        == 0
    )
    assert "shards:  8/8 done" in capsys.readouterr().out


def test_rerun_skips_completed_shards_and_refuses_other_spec(
    tiny_marian: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = StorageRoot("local", str(tmp_path / "root"))
    root.write_parquet("in/corpus.parquet", corpus_table(120, awkward=False))
    config = write_config(tmp_path, **job_config(root, tiny_marian))
    assert main(["run", config, "--no-progress"]) == 0
    out = Path(root.url_of("out"))
    before = {p.name: p.read_text() for p in (out / "_completions").iterdir()}
    assert len(before) == 3

    # Lose one shard's marker (as if the driver died before writing it): only it reruns.
    (out / "_completions" / "00001").unlink()
    (out / "_SUCCESS").unlink()
    capsys.readouterr()
    assert main(["run", config, "--no-progress"]) == 0
    assert "resumed: 2 shard(s) were done, 1 run now" in capsys.readouterr().out
    after = {p.name: p.read_text() for p in (out / "_completions").iterdir()}
    assert after["00000"] == before["00000"] and after["00002"] == before["00002"]

    assert main(["run", config, "--no-progress"]) == 0
    assert "already complete" in capsys.readouterr().out

    assert main(["run", config, "--no-progress", "--set", "decoding.num_beams=1"]) == 2
    err = capsys.readouterr().err
    assert "different job spec" in err and "output.overwrite=true" in err
    assert (
        main(
            [
                "run",
                config,
                "--no-progress",
                "--set",
                "decoding.num_beams=1",
                "--set",
                "output.overwrite=true",
            ]
        )
        == 0
    )


def test_killed_worker_is_replaced_and_its_shard_retried(
    tiny_marian: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = StorageRoot("local", str(tmp_path / "root"))
    table = corpus_table(160, awkward=False)
    root.write_parquet("in/corpus.parquet", table)
    marker = tmp_path / "fault-fired"
    monkeypatch.setenv("BATCHMT_FAULT_EXIT_ON_SHARD", "00002")
    monkeypatch.setenv("BATCHMT_FAULT_MARKER", str(marker))
    config = write_config(tmp_path, **job_config(root, tiny_marian))

    assert main(["run", config, "--no-progress"]) == 0
    assert marker.exists()  # the worker really died on shard 00002
    rows = read_output(root)
    assert sorted(r["id"] for r in rows) == table.column("id").to_pylist()
    assert read_json(root, "_completions", "00002")["attempt"] == 2


def test_shard_that_keeps_killing_workers_fails_the_job_but_not_the_others(
    tiny_marian: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = StorageRoot("local", str(tmp_path / "root"))
    root.write_parquet("in/corpus.parquet", corpus_table(120, awkward=False))
    monkeypatch.setenv("BATCHMT_FAULT_EXIT_ON_SHARD", "00001")
    monkeypatch.delenv("BATCHMT_FAULT_MARKER", raising=False)
    config = write_config(
        tmp_path, **job_config(root, tiny_marian, workers={"max_shard_attempts": 2})
    )

    assert main(["run", config, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "00001" in err and "2 attempts" in err and "worker died" in err
    out = Path(root.url_of("out"))
    assert sorted(p.name for p in (out / "_completions").iterdir()) == ["00000", "00002"]
    assert not (out / "_SUCCESS").exists()
