"""The Python API (`import batchmt`): a job from a plain interpreter, beside a user's own
top-level `pipeline/`, `workers/` and `jobs/` packages, and its output read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import batchmt
from batchmt.pipeline.status import OK
from tests.jobs.corpora import corpus_table
from tests.pipeline.test_spec import BASE

ROWS = 40

# What a user's project may hold: packages named like batchmt's rooms. Importing any of
# them would mean batchmt picked up the user's code instead of its own.
_USER_PACKAGE = 'raise ImportError("the user\'s own {name} package was imported")\n'


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, tiny_marian: Path) -> dict[str, Any]:
    """Run one job through `batchmt.run` in a fresh interpreter whose working directory holds
    the user's `pipeline/`, `workers/` and `jobs/` packages (first on sys.path)."""
    project = tmp_path_factory.mktemp("user_project")
    for name in ("pipeline", "workers", "jobs"):
        (project / name).mkdir()
        (project / name / "__init__.py").write_text(_USER_PACKAGE.format(name=name))
    pq.write_table(corpus_table(ROWS, awkward=False), project / "corpus.parquet")
    config = {
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": "corpus.parquet"},
        "output": {"path": "out"},
        "model": {"name_or_path": str(tiny_marian)},
        "decoding": {"num_beams": 1, "max_new_tokens": 8},
        "workers": {"num_workers": 1, "num_cpus": 1},
        "sharding": {"rows_per_shard": 15},
        # Random weights: the QE fallback would replace most rows (ok_fallback); this test
        # is about imports, so every row stays as first translated.
        "quality": {"fallback": {"enabled": False}},
    }
    script = textwrap.dedent(
        f"""
        import json, sys
        import batchmt
        config = {config!r}
        plan = batchmt.plan(config)
        outcome = batchmt.run(config)
        table = batchmt.read_output(outcome.output_path)
        assert not any(m in sys.modules for m in ("pipeline", "workers", "jobs"))
        print(json.dumps({{
            "shards": len(plan.shards),
            "state": outcome.state,
            "rows_in": outcome.summary["rows_in"],
            "rows_out": table.num_rows,
            "statuses": sorted(set(table.column("status").to_pylist())),
        }}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = done.stdout.strip().splitlines()  # the API logs to stdlib logging, not stdout
    return {"project": project, **json.loads(line)}


def test_run_from_a_plain_interpreter_beside_user_packages(job: dict[str, Any]) -> None:
    assert job["shards"] == 3
    assert job["state"] == "new"
    assert job["rows_in"] == job["rows_out"] == ROWS
    assert job["statuses"] == [OK]


def test_read_output_returns_each_row_once(job: dict[str, Any]) -> None:
    table = batchmt.read_output(job["project"] / "out")
    ids = table.column("id").to_pylist()
    assert sorted(ids) == [f"r{i:05d}" for i in range(ROWS)]
    assert {"translation", "status", "error"} <= set(table.column_names)


@pytest.mark.usefixtures("ray_local")
def test_read_output_as_a_ray_dataset(job: dict[str, Any]) -> None:
    dataset = batchmt.read_output(job["project"] / "out", as_ray_dataset=True)
    assert dataset.count() == ROWS


def test_read_output_of_an_empty_output_is_an_empty_table(tmp_path: Path) -> None:
    assert batchmt.read_output(tmp_path).num_rows == 0


def test_read_output_of_a_missing_path_raises_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"looked for {tmp_path}/out-typo"):
        batchmt.read_output("out-typo")


def test_base_dir_reaches_every_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_marian: Path
) -> None:
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "m").symlink_to(tiny_marian)
    pq.write_table(corpus_table(10, awkward=False), project / "corpus.parquet")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = {
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": "corpus.parquet"},
        "output": {"path": "out"},
        "glossary": {"path": "terms.tsv"},
        "cache": {"path": "memory"},
        "model": {"name_or_path": "models/m"},
    }
    assert batchmt.plan(config, base_dir=project).num_rows == 10
    from batchmt.api import with_base_dir

    spec = with_base_dir(batchmt.load_config(config), project)
    assert spec.input.path == str(project / "corpus.parquet")
    assert spec.output.path == str(project / "out")
    assert spec.glossary.path == str(project / "terms.tsv")
    assert spec.cache.path == str(project / "memory")
    assert spec.model.name_or_path == str(project / "models/m")
    hub = with_base_dir(
        batchmt.load_config({**config, "model": {"name_or_path": "org/x"}}), project
    )
    assert hub.model.name_or_path == "org/x"  # a hub id stays one
    with pytest.raises(Exception, match=f"looked for {elsewhere}/corpus.parquet"):
        batchmt.plan(config)  # without base_dir: the working directory, said in the message


def test_import_batchmt_does_not_load_ray_or_torch() -> None:
    probe = "import sys, batchmt; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"


def test_load_config_takes_a_spec_a_dict_or_a_path(tmp_path: Path) -> None:
    data = {**BASE, "model": {"name_or_path": "m"}}
    spec = batchmt.load_config(data, ["decoding.num_beams=2"])
    assert spec.decoding.num_beams == 2
    assert batchmt.load_config(spec) is spec
    assert batchmt.load_config(spec, ["decoding.num_beams=3"]).decoding.num_beams == 3
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    assert batchmt.load_config(path).model.name_or_path == "m"
    with pytest.raises(batchmt.SpecError, match=r"YAML path, a dict or a batchmt\.JobSpec"):
        batchmt.load_config(42)  # type: ignore[arg-type]


def test_errors_share_one_root_exported_without_ray_or_torch(tmp_path: Path) -> None:
    """A notebook catches `batchmt.BatchmtError` (or the exit-2 kind, `batchmt.UserError`)
    without importing the driver: the error classes load nothing heavy."""
    probe = (
        "import sys, batchmt; assert issubclass(batchmt.JobFailed, batchmt.BatchmtError); "
        "assert issubclass(batchmt.UserError, batchmt.BatchmtError); "
        "print(sorted({'ray', 'torch'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"
    with pytest.raises(batchmt.UserError, match="not found"):
        batchmt.load_config(tmp_path / "missing.yaml")
    with pytest.raises(batchmt.BatchmtError):
        batchmt.load_config(42)  # type: ignore[arg-type]
