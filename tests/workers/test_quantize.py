"""INT8 replicas: what the policy quantizes, how close they stay to fp32, and error messages."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import MarianConfig, MarianMTModel

from batchmt.workers.engines.quantize import (
    SEQ2SEQ_LINEARS,
    W8A8Linear,
    quantize_model,
    quantize_w8a8,
    weight_bytes,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def marian() -> MarianMTModel:
    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=96,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=64,
        pad_token_id=95,
        eos_token_id=0,
        decoder_start_token_id=95,
        activation_function="swish",
    )
    return MarianMTModel(config).eval()


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(2, 95, (4, 12), generator=generator)
    decoder_input_ids = torch.randint(2, 95, (4, 9), generator=generator)
    return {"input_ids": input_ids, "decoder_input_ids": decoder_input_ids}


def quantized_cpu(model: MarianMTModel) -> nn.Module:
    return quantize_model(copy.deepcopy(model), "int8", CPU)


def quantized_w8a8(model: MarianMTModel) -> nn.Module:
    return quantize_w8a8(copy.deepcopy(model))


BACKENDS = [pytest.param(quantized_cpu, id="cpu-dynamic"), pytest.param(quantized_w8a8, id="w8a8")]


def is_quantized(module: nn.Module) -> bool:
    return type(module) is not nn.Linear and module.__class__.__name__.endswith("Linear")


@pytest.mark.parametrize("build", BACKENDS)
def test_policy_quantizes_attention_and_ffn_only(marian: MarianMTModel, build) -> None:
    q = build(marian)
    leaves = {name: m for name, m in q.named_modules() if name.rsplit(".", 1)[-1]}
    attn_ffn = [m for n, m in leaves.items() if n.rsplit(".", 1)[-1] in SEQ2SEQ_LINEARS]
    assert len(attn_ffn) == 2 * 6 + 2 * 10  # enc: 4 attn + 2 ffn; dec: 8 attn + 2 ffn
    assert all(is_quantized(m) for m in attn_ffn)
    assert type(q.lm_head) is nn.Linear and q.lm_head.weight.dtype == torch.float32
    assert q.lm_head.weight is q.model.shared.weight  # still tied to the embeddings
    for module in q.modules():
        if isinstance(module, nn.LayerNorm | nn.Embedding):
            assert module.weight.dtype == torch.float32


@pytest.mark.parametrize("build", BACKENDS)
def test_int8_logits_stay_close_to_fp32(marian: MarianMTModel, batch, build) -> None:
    q = build(marian)
    with torch.inference_mode():
        ref = marian(**batch).logits
        out = q(**batch).logits
    relative = (out - ref).norm() / ref.norm()
    assert relative < 0.05
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9


@pytest.mark.parametrize("build", BACKENDS)
def test_generate_works_after_quantization(marian: MarianMTModel, batch, build) -> None:
    q = build(marian)
    with torch.inference_mode():
        out = q.generate(input_ids=batch["input_ids"], num_beams=4, max_new_tokens=6)
    assert out.shape[0] == batch["input_ids"].shape[0]
    assert out[:, 0].eq(95).all()  # decoding starts from <pad> = decoder_start_token_id


def test_weight_bytes_shrinks_and_counts_packed_weights(marian: MarianMTModel) -> None:
    fp32 = weight_bytes(marian)
    embeddings = marian.model.shared.weight
    assert fp32 < sum(p.numel() * 4 for p in marian.state_dict().values())  # tied counted once
    assert weight_bytes(quantized_cpu(marian)) < fp32
    # Only the vocabulary matrix and norms stay fp32; the rest drops to about a quarter.
    linear_bytes = sum(m.weight.numel() for _, m in _targets(marian)) * 4
    w8a8 = weight_bytes(quantized_w8a8(marian))
    assert fp32 - w8a8 == pytest.approx(linear_bytes * 3 / 4, rel=0.05)
    assert embeddings.numel() * 4 < w8a8


def _targets(model: nn.Module):
    from batchmt.workers.engines.quantize import target_linears

    return list(target_linears(model))


@pytest.mark.parametrize("rows", [4, 64], ids=["fallback-M<=16", "int-mm"])
def test_w8a8_linear_matches_float_linear(rows: int) -> None:
    torch.manual_seed(2)
    linear = nn.Linear(64, 32)
    x = torch.randn(rows, 64)
    q = W8A8Linear(linear)
    ref, out = linear(x), q(x)
    assert out.shape == ref.shape
    assert ((out - ref).norm() / ref.norm()) < 0.02


def test_w8a8_linear_keeps_leading_dims_and_dtype() -> None:
    q = W8A8Linear(nn.Linear(16, 8))
    x = torch.randn(3, 7, 16, dtype=torch.bfloat16)
    out = q(x)
    assert out.shape == (3, 7, 8) and out.dtype == torch.bfloat16


def test_mode_none_returns_the_model_in_eval_mode(marian: MarianMTModel) -> None:
    model = copy.deepcopy(marian).train()
    out = quantize_model(model, "none", CPU)
    assert out is model and not out.training
    assert not any(is_quantized(m) for m in out.modules())


def test_unknown_mode_names_the_allowed_ones(marian: MarianMTModel) -> None:
    with pytest.raises(ValueError, match=r"unknown quantization mode 'int4'; allowed: none, int8"):
        quantize_model(marian, "int4", CPU)


def test_unsupported_device_says_what_to_do(marian: MarianMTModel) -> None:
    with pytest.raises(ValueError, match=r"not available on device 'meta'.*mode 'none'"):
        quantize_model(copy.deepcopy(marian), "int8", torch.device("meta"))
