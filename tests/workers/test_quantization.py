"""workers/quantization: the pack layout (compressed-tensors' words), formats, and how a
matrix is rounded into them (rounding.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from batchmt.workers.quantization import formats, sensitivity
from batchmt.workers.quantization.calibration import seq2seq_batches
from batchmt.workers.quantization.formats import FormatError, dequantize, parse_format
from batchmt.workers.quantization.rounding import Rounder, clipped, gptq
from batchmt.workers.quantization.units import family_units
from tests.tiny_models import build_tiny_marian, corpus


@pytest.fixture(autouse=True)
def pure_torch_packing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-torch path is the one under test (with compressed-tensors installed, its own
    functions run instead and give these same words)."""
    monkeypatch.setattr(formats, "_library_packing", lambda: False)


def test_packed_words_match_compressed_tensors() -> None:
    # Words written by compressed_tensors 0.20.1 pack_to_int32 for these values.
    q3 = torch.tensor(
        [[(i * 7) % 8 - 4 for i in range(40)], [3 - (i % 8) for i in range(40)]], dtype=torch.int8
    )
    assert formats.pack(q3, 3).tolist() == [
        [-1205220424, -877123125, 701216809, 2739128],
        [1996831095, 964101433, 87652101, 342391],
    ]
    q2 = torch.tensor([[(i % 4) - 2 for i in range(20)]], dtype=torch.int8)
    assert formats.pack(q2, 2).tolist() == [[-454761244, 228]]


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("cols", [7, 32, 100, 256])
def test_pack_round_trip(bits: int, cols: int) -> None:
    q = torch.randint(-(2 ** (bits - 1)), 2 ** (bits - 1), (5, cols), dtype=torch.int8)
    words = formats.pack(q, bits)
    assert words.dtype == torch.int32 and words.shape[1] == -(-cols * bits // 32)
    assert torch.equal(formats.unpack(words, bits, cols), q)


def test_formats_and_their_sizes() -> None:
    int4 = parse_format("int4")
    assert (int4.bits, int4.group_size) == (4, 32)
    assert parse_format("int8").group_size == 0 and parse_format("int3-g64").group_size == 64
    # 256 x 1024: 4 bits each, one fp16 scale per 32 inputs, the shape pair.
    assert int4.nbytes((256, 1024)) == 256 * 1024 // 2 + 256 * 32 * 2 + 16
    with pytest.raises(FormatError, match="int8, int4, int3 or int2"):
        parse_format("int5")
    weight = torch.randn(16, 64)
    error = {
        b: (formats.fake_quantize(weight, parse_format(f"int{b}")) - weight).norm()
        for b in (2, 3, 4, 8)
    }
    assert error[8] < error[4] < error[3] < error[2]


def _output_error(
    weight: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, fmt: str, x: torch.Tensor
) -> float:
    approx = dequantize(q, scale, parse_format(fmt), torch.float32)
    return float(((approx - weight) @ x.T).norm() / (weight @ x.T).norm())


@pytest.mark.parametrize("fmt", ["int2", "int3", "int4", "int8"])
def test_searched_scales_and_gptq_lower_the_output_error(fmt: str) -> None:
    torch.manual_seed(0)
    weight = torch.randn(64, 128)
    weight[:, 5] *= 8  # an outlier column, as real layers have
    # Correlated inputs with uneven scales: where activation-aware rounding matters.
    x = torch.randn(512, 128) @ (torch.eye(128) + 0.3 * torch.randn(128, 128))
    x[:, :16] *= 5
    hessian = (x.T @ x).double()
    plain = formats.quantize_weight(weight, parse_format(fmt))
    clip = clipped(weight, parse_format(fmt), torch.diag(hessian).float())
    solved = gptq(weight, hessian, parse_format(fmt))
    errors = [_output_error(weight, *values, fmt, x) for values in (plain, clip, solved)]
    # The grid holds the plain scale (ratio 1.0), so the search is never worse; GPTQ
    # compensates each rounding on the columns still to come.
    assert errors[1] <= errors[0] + 1e-6
    assert errors[2] < errors[1]
    for q, scale in (clip, solved):
        bits = parse_format(fmt).bits
        assert q.dtype == torch.int8 and int(q.min()) >= -(2 ** (bits - 1))
        assert int(q.max()) <= 2 ** (bits - 1) - 1 and scale.dtype == torch.float16


def test_sensitivity_measures_narrow_formats_and_reuses_the_encoder_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    folder = build_tiny_marian(tmp_path / "m")
    model = AutoModelForSeq2SeqLM.from_pretrained(str(folder)).eval()
    lines = corpus(24, seed=5)
    batches = seq2seq_batches(
        AutoTokenizer.from_pretrained(str(folder)), list(zip(lines, lines[::-1])), 8
    )
    units = family_units(model, "seq2seq")
    reference, results = sensitivity.reference_pass(model, units, batches)
    embedding = next(u for u in units if u.role == "embedding")
    # The tied embedding is rounded against the output head's inputs.
    assert embedding.name in reference.hessians
    rounder = Rounder(model, reference.hessians)
    names = ["int8", "int4", "int3", "int2"]
    fmts = [parse_format(n) for n in names]
    decoder = [u for u in units if u.name.startswith("model.decoder.")][:2]
    chosen = [embedding, *decoder]
    sensitivity.measure(model, chosen, fmts, batches, reference, results, rounder)
    assert sensitivity.passes(chosen, fmts) == 4 + 2 * 2
    for unit in decoder:
        assert results[unit.name].measured == ["int3", "int2"]
        kl = results[unit.name].kl
        assert set(kl) == set(names) and kl["int8"] < kl["int4"] < kl["int3"]
    assert results[embedding.name].measured == names
    # A decoder unit's pass on the cached encoder output gives the full pass's KL.
    unit = decoder[0]
    with torch.inference_mode():
        reused = sensitivity._kl(model, unit, fmts[3], rounder, batches, reference)
        monkeypatch.setattr(sensitivity, "_decoder_side", lambda _unit: False)
        full = sensitivity._kl(model, unit, fmts[3], rounder, batches, reference)
    assert reused == pytest.approx(full, rel=1e-4) and full > 0
