"""The decoder-only engine on a tiny random-weight HY-MT look-alike.

The model knows nothing, so these tests check what must hold regardless of its answers:
the prompt it sees, every row coming back, left padding, stopping, quantization and the
refusals that protect a job from a replica that cannot work.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from batchmt.pipeline.spec import JobSpec, spec_from_dict
from batchmt.workers.engines.base import EngineConfig, EngineLoadError, Segment
from batchmt.workers.engines.causal import CausalEngine, CausalStep, decode_rows, greedy
from batchmt.workers.engines.loading import load_engine
from batchmt.workers.engines.memory import check_fit, footprint, kv_bytes_per_token
from batchmt.workers.engines.prequantized import prequantized_config
from batchmt.workers.engines.quantize import CAUSAL_LINEARS
from batchmt.workers.translate import translate_texts
from tests.workers.tiny_causal import ASSISTANT, BOS, USER, build_tiny_hy_mt

CPU = torch.device("cpu")
SEGMENTS = [
    Segment("a man is walking in the park with a dog."),
    Segment("the dog"),
    Segment("一个男人在公园", context=("a red ball.", "two children.")),
    Segment("two cats are sitting.", terms=(("cats", "Katzen"),)),
    Segment("blue water"),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """A 32-wide model gains nothing from threads; on a shared 2-core machine the thread
    pool's spin-waits made these tests 13x slower."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def tiny_hy_mt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_hy_mt(tmp_path_factory.mktemp("models") / "tiny-hy-mt")


def make_spec(model: Path, *, quantization: str = "none", **decoding: Any) -> JobSpec:
    return spec_from_dict(
        {
            "source_lang": "en",
            "target_lang": "de",
            "input": {"path": "in.parquet"},
            "output": {"path": "out"},
            "model": {"name_or_path": str(model), "quantization": quantization},
            "decoding": {"num_beams": 1, "max_new_tokens": 40, **decoding},
        }
    )


@pytest.fixture(scope="module")
def greedy_engine(tiny_hy_mt: Path) -> CausalEngine:
    engine = load_engine(EngineConfig.from_spec(make_spec(tiny_hy_mt)), str(tiny_hy_mt), CPU)
    assert isinstance(engine, CausalEngine)
    return engine


def test_decoder_only_models_load_as_causal_engine(greedy_engine: CausalEngine) -> None:
    assert greedy_engine.signature["family"] == "causal"
    assert greedy_engine.signature["dtype"] == "float32"  # auto on CPU
    assert greedy_engine.signature["decoding"] == "greedy"


def test_prompt_is_one_user_turn_without_system_prompt(greedy_engine: CausalEngine) -> None:
    prompt = greedy_engine.prompts.for_segment(Segment("a dog."))
    assert greedy_engine._chat([prompt]) == [BOS + USER + prompt + ASSISTANT]


def test_count_tokens_counts_the_source_text_only(greedy_engine: CausalEngine) -> None:
    tokenizer = greedy_engine.tokenizer
    expected = len(tokenizer("a man", add_special_tokens=False)["input_ids"])
    assert greedy_engine.count_tokens(["a man"]) == [expected]


def test_input_limit_leaves_room_for_the_whole_translation(tiny_hy_mt: Path) -> None:
    # Output bound 1.5 x source + 10 must fit max_new_tokens=40: source <= 20 tokens.
    engine = CausalEngine(EngineConfig.from_spec(make_spec(tiny_hy_mt)), str(tiny_hy_mt), CPU)
    assert engine.max_input_tokens == 20
    # max_new_tokens=300 allows 193 source tokens, but prompt + 300 must fit 512 positions.
    wide = CausalEngine(
        EngineConfig.from_spec(make_spec(tiny_hy_mt, max_new_tokens=300)), str(tiny_hy_mt), CPU
    )
    overhead = max(wide._prompt_lengths([wide.prompts.plain(""), wide.prompts.formatted("")]))
    assert wide.max_input_tokens == 512 - overhead - 300 < 193
    # Nothing fits: the floor keeps the engine usable, the shard loop splits finely.
    none_left = CausalEngine(
        EngineConfig.from_spec(make_spec(tiny_hy_mt, max_new_tokens=2000)), str(tiny_hy_mt), CPU
    )
    assert none_left.max_input_tokens == 8


def test_every_row_comes_back_and_batch_equals_one_by_one(greedy_engine: CausalEngine) -> None:
    batch = greedy_engine.translate_batch(SEGMENTS)
    assert len(batch) == len(SEGMENTS)
    alone = [greedy_engine.translate_batch([s])[0] for s in SEGMENTS]
    assert batch == alone
    assert any(batch)  # the random model does say something


def test_own_greedy_loop_matches_generate(greedy_engine: CausalEngine) -> None:
    """Left padding, positions and the KV-cache reorder, checked against transformers."""
    tokenizer, model = greedy_engine.tokenizer, greedy_engine.model
    prompts = greedy_engine._chat([greedy_engine.prompts.for_segment(s) for s in SEGMENTS])
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    bounds = [3, 12, 7, 12, 1]  # rows leave the batch at different steps
    step = CausalStep(model, inputs["input_ids"], inputs["attention_mask"])
    ours, means = decode_rows(step, inputs["input_ids"], bounds, greedy_engine.stop_ids, greedy)
    reference = model.generate(
        **inputs,
        do_sample=False,
        num_beams=1,
        max_new_tokens=12,
        max_length=None,
        eos_token_id=sorted(greedy_engine.stop_ids),
        pad_token_id=tokenizer.pad_token_id,
    )[:, inputs["input_ids"].shape[1] :].tolist()
    for row, bound in zip(ours, bounds, strict=True):
        assert 1 <= len(row) <= bound
    assert ours == [ref[: len(row)] for ref, row in zip(reference, ours, strict=True)]
    # QE's confidence: the model's mean log-prob of the chosen tokens, stop token included,
    # as one forward pass over each prompt and its answer gives it.
    eos = min(greedy_engine.stop_ids)
    for k, (row, bound, mean) in enumerate(zip(ours, bounds, means, strict=True)):
        prompt = inputs["input_ids"][k][inputs["attention_mask"][k].bool()].tolist()
        answer = row if len(row) == bound else [*row, eos]
        with torch.no_grad():
            logits = model(torch.tensor([prompt + answer])).logits[0].float()
        forced = logits[len(prompt) - 1 : -1].log_softmax(-1)
        expected = float(forced.gather(1, torch.tensor(answer)[:, None]).mean())
        assert abs(mean - expected) < 1e-3, (k, mean, expected)


class _ScriptedStep:
    """Log-probs that pick row r's script[r][step]; records which rows were kept."""

    def __init__(self, script: list[list[int]], vocab: int = 10) -> None:
        self.script, self.vocab, self.t, self.rows = script, vocab, -1, list(range(len(script)))
        self.kept: list[list[int]] = []

    def __call__(self, tokens: torch.Tensor | None) -> torch.Tensor:
        assert (tokens is None) == (self.t == -1)
        self.t += 1
        out = torch.full((len(self.rows), self.vocab), -10.0)
        for h, row in enumerate(self.rows):
            out[h, self.script[row][self.t]] = 0.0
        return out

    def reorder(self, index: torch.Tensor) -> None:
        self.kept.append(index.tolist())
        self.rows = [self.rows[i] for i in index.tolist()]


def test_rows_stop_at_eos_and_leave_the_batch() -> None:
    eos = 9
    step = _ScriptedStep([[4, 9, 0, 0], [5, 6, 7, 9], [9, 0, 0, 0]])
    history = torch.zeros((3, 2), dtype=torch.long)
    out, means = decode_rows(step, history, [8, 8, 8], {eos}, greedy)  # type: ignore[arg-type]
    assert out == [[4], [5, 6, 7], []]
    assert means == [0.0, 0.0, 0.0]  # each chosen token scored 0 by the script
    assert step.kept == [[0, 1], [1], [0]]


def test_rows_stop_at_their_length_bound() -> None:
    step = _ScriptedStep([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]])
    history = torch.zeros((2, 1), dtype=torch.long)
    out, _ = decode_rows(step, history, [2, 4], {9}, greedy)  # type: ignore[arg-type]
    assert out == [[1, 2], [1, 2, 3, 4]]


def test_beam_search_returns_every_row(tiny_hy_mt: Path) -> None:
    spec = make_spec(tiny_hy_mt, num_beams=3, max_new_tokens=12)
    engine = CausalEngine(EngineConfig.from_spec(spec), str(tiny_hy_mt), CPU)
    assert engine.signature["decoding"] == "beam3"
    assert len(engine.translate_batch(SEGMENTS)) == len(SEGMENTS)
    # Rows with the same output bound: padding must not change a row's beam search.
    same = [Segment("the dog"), Segment("two children are playing in the street")]
    counts = engine.count_tokens([s.text for s in same])
    assert engine.config.output_bound(counts[0]) == engine.config.output_bound(counts[1])
    assert engine.translate_batch(same) == [engine.translate_batch([s])[0] for s in same]


def test_sampling_is_seeded(tiny_hy_mt: Path) -> None:
    plain = [s for s in SEGMENTS if not s.terms]  # rows with terms take the beam search
    engine = CausalEngine(
        EngineConfig.from_spec(make_spec(tiny_hy_mt, do_sample=True)), str(tiny_hy_mt), CPU
    )
    first = engine.translate_batch(plain)
    assert first == engine.translate_batch(plain)
    other = CausalEngine(
        EngineConfig.from_spec(make_spec(tiny_hy_mt, do_sample=True, seed=7)), str(tiny_hy_mt), CPU
    )
    assert other.translate_batch(plain) != first


def test_context_goes_into_the_prompt_and_is_never_emitted(
    greedy_engine: CausalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    segment = SEGMENTS[2]
    prompt = greedy_engine.prompts.for_segment(segment)
    assert prompt.startswith("a red ball.\ntwo children.\n参考上面的信息")
    # A model that echoes its context before answering (what a small model may do).
    echo = ["a red ball.\ntwo children.\nEin Mann im Park"]
    monkeypatch.setattr(greedy_engine.tokenizer, "batch_decode", lambda *a, **k: echo)
    assert greedy_engine.translate_batch([segment]) == ["Ein Mann im Park"]


def test_glossary_terms_are_prompted_and_enforced(greedy_engine: CausalEngine) -> None:
    segment = SEGMENTS[3]
    assert "cats 翻译成 Katzen" in greedy_engine.prompts.for_segment(segment)
    # The random model would never write "Katzen"; the constrained search makes it.
    batch = greedy_engine.translate(SEGMENTS)
    assert "Katzen" in batch[3].text and batch[3].unmet_terms == []
    two = Segment("a dog and a cat", terms=(("dog", "Hund"), ("cat", "Katze")))
    (result,) = greedy_engine.translate([two])
    assert "Hund" in result.text and "Katze" in result.text


def test_beam_search_matches_generate_without_terms(tiny_hy_mt: Path) -> None:
    """Our search and transformers' generate agree on a batch without terms."""
    spec = make_spec(tiny_hy_mt, num_beams=3, max_new_tokens=12)
    engine = CausalEngine(EngineConfig.from_spec(spec), str(tiny_hy_mt), CPU)
    ours = engine.translate_batch(SEGMENTS[:2] + SEGMENTS[4:])
    engine.decoder = "hf"
    assert ours == engine.translate_batch(SEGMENTS[:2] + SEGMENTS[4:])


def test_formatted_translation_strips_the_target_wrapper(
    greedy_engine: CausalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = [t.text for t in greedy_engine.translate([Segment("Click <sn>Save</sn>.")], marked=True)]
    assert len(out) == 1 and "<target>" not in out[0] and "</target>" not in out[0]
    answer = ["<target>Klicke auf <sn>Speichern</sn>.</target><｜hy_place▁holder▁no▁2｜>"]
    monkeypatch.setattr(greedy_engine.tokenizer, "batch_decode", lambda *a, **k: answer)
    assert [t.text for t in greedy_engine.translate([Segment("x")], marked=True)] == [
        "Klicke auf <sn>Speichern</sn>."
    ]


def test_the_shard_loop_runs_the_causal_engine(greedy_engine: CausalEngine) -> None:
    texts = ["a dog.", None, "  ", "the red ball is in the water. " * 6, "一个孩子"]
    results, stats = translate_texts(
        greedy_engine,
        texts,
        [()] * len(texts),
        target_lang="de",
        max_batch_tokens=512,
        max_batch_size=8,
    )
    assert [r.status for r in results] == ["ok", "empty", "empty", "ok_split", "ok"]
    assert stats.batch_failures == 0


def test_batch_costs_count_prompt_and_output_per_beam(tiny_hy_mt: Path) -> None:
    engine = CausalEngine(
        EngineConfig.from_spec(make_spec(tiny_hy_mt, num_beams=4)), str(tiny_hy_mt), CPU
    )
    tokens = engine.count_tokens([s.text for s in SEGMENTS])
    costs = engine.batch_costs(SEGMENTS, tokens)
    prompts = engine._prompt_lengths([engine.prompts.for_segment(s) for s in SEGMENTS])
    expected = [(p + min(40, int(1.5 * n + 10))) * 4 for p, n in zip(prompts, tokens, strict=True)]
    assert costs == expected


def test_cpu_int8_quantizes_the_projections_and_translates(tiny_hy_mt: Path) -> None:
    engine = CausalEngine(
        EngineConfig.from_spec(make_spec(tiny_hy_mt, quantization="int8")), str(tiny_hy_mt), CPU
    )
    kinds = {
        name.rsplit(".", 1)[-1]: type(module).__module__
        for name, module in engine.model.named_modules()
        if name.endswith(CAUSAL_LINEARS)
    }
    assert sorted(kinds) == sorted(CAUSAL_LINEARS)
    assert all(".quantized." in module for module in kinds.values())
    assert type(engine.model.lm_head) is nn.Linear  # picks the token: stays fp32
    assert len(engine.translate_batch(SEGMENTS)) == len(SEGMENTS)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (
            "fp8",
            r"model.quantization=fp8 loads a checkpoint released in that format .*"
            r"HY-MT1.5-1.8B-FP8.*has no quantization_config",
        ),
        ("gptq-int4", r"HY-MT1.5-1.8B-GPTQ-Int4.*has no quantization_config"),
    ],
)
def test_prequantized_modes_refuse_unquantized_checkpoints(
    tiny_hy_mt: Path, mode: str, message: str
) -> None:
    with pytest.raises(EngineLoadError, match=message):
        CausalEngine(
            EngineConfig.from_spec(make_spec(tiny_hy_mt, quantization=mode)), str(tiny_hy_mt), CPU
        )


HY_MT_FP8_QUANT = {
    "quant_method": "fp8",
    "activation_scheme": "static",
    "ignored_layers": ["lm_head"],
}


@pytest.fixture(scope="module")
def tiny_fp8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_hy_mt(
        tmp_path_factory.mktemp("models") / "tiny-fp8",
        config_extra={"quantization_config": HY_MT_FP8_QUANT},
    )


def test_fp8_checkpoint_refuses_cpu(tiny_fp8: Path) -> None:
    with pytest.raises(EngineLoadError, match="fp8 runs on a CUDA GPU only"):
        CausalEngine(
            EngineConfig.from_spec(make_spec(tiny_fp8, quantization="fp8")), str(tiny_fp8), CPU
        )


@pytest.mark.parametrize("mode", ["none", "int8"])
def test_quantized_checkpoint_refuses_unquantized_modes(tiny_fp8: Path, mode: str) -> None:
    with pytest.raises(EngineLoadError, match=r"already quantized .*set model.quantization=fp8"):
        CausalEngine(
            EngineConfig.from_spec(make_spec(tiny_fp8, quantization=mode)), str(tiny_fp8), CPU
        )


def test_gptq_mode_refuses_an_fp8_checkpoint(tiny_fp8: Path) -> None:
    with pytest.raises(EngineLoadError, match=r"gptq-int4 does not match .* quantized with 'fp8'"):
        CausalEngine(
            EngineConfig.from_spec(make_spec(tiny_fp8, quantization="gptq-int4")),
            str(tiny_fp8),
            CPU,
        )


def test_fp8_quirk_is_patched_on_a_copy(tiny_fp8: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_fp8)
    on_disk = (tiny_fp8 / "config.json").read_text()
    patched = prequantized_config(config, "fp8", torch.device("cuda"), "tiny")
    assert patched.quantization_config["ignore"] == ["lm_head"]
    assert "ignored_layers" not in patched.quantization_config
    original = config.quantization_config
    assert "ignored_layers" in (original if isinstance(original, dict) else original.to_dict())
    assert (tiny_fp8 / "config.json").read_text() == on_disk
    assert "ignored_layers" in json.loads(on_disk)["quantization_config"]


def test_replica_that_cannot_fit_is_refused(tiny_hy_mt: Path) -> None:
    spec = make_spec(tiny_hy_mt, max_batch_tokens=100_000)
    with pytest.raises(EngineLoadError, match=r"does not fit .*lower decoding.max_batch_tokens to"):
        CausalEngine(EngineConfig.from_spec(spec), str(tiny_hy_mt), CPU, memory_bytes=64 * 2**20)
    with pytest.raises(EngineLoadError, match=r"does not fit .*model.quantization=int8"):
        CausalEngine(EngineConfig.from_spec(spec), str(tiny_hy_mt), CPU, memory_bytes=100_000)


# HY-MT1.5-1.8B's shape (HunYuanDenseV1): 32 layers, d2048, 16 heads / 4 KV heads of 128.
HY_MT_18B = {
    "vocab_size": 120818,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "tie_word_embeddings": True,
    "max_position_embeddings": 32768,
}


def test_fit_check_numbers_for_an_hy_mt_sized_model() -> None:
    from transformers import HunYuanDenseV1Config

    config = HunYuanDenseV1Config(**HY_MT_18B)
    assert kv_bytes_per_token(config, 2) == 2 * 32 * 4 * 128 * 2  # 64 KiB per token in bf16
    bf16 = footprint(config, "none", torch.bfloat16, torch.device("cuda"))
    int8 = footprint(config, "int8", torch.bfloat16, torch.device("cuda"))
    assert 3.0e9 < bf16.weights < 4.0e9  # ~1.8B parameters x 2 bytes
    assert int8.weights < 0.65 * bf16.weights
    h100 = 80 * 2**30
    assert (
        check_fit(
            bf16, 65536, h100, model_name="hy", quantization="none", device=torch.device("cuda")
        )
        > 500_000
    )
    with pytest.raises(EngineLoadError, match="does not fit one replica's GPU"):
        check_fit(
            bf16,
            65536,
            4 * 2**30,
            model_name="hy",
            quantization="none",
            device=torch.device("cuda"),
        )
