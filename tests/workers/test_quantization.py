"""workers/quantization: the pack layout (compressed-tensors' words), formats, the allocation
under a budget and the sensitive-unit rule."""

from __future__ import annotations

import random

import pytest
import torch

from batchmt.workers.quantization import formats
from batchmt.workers.quantization.allocate import BudgetError, Option, UnitChoice, allocate
from batchmt.workers.quantization.formats import FormatError, parse_format


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


def _random_units(rng: random.Random, n: int) -> list[UnitChoice]:
    units = []
    for i in range(n):
        params = rng.choice([1024, 4096, 65536])
        scale = rng.uniform(1e-5, 1.0)
        options = [Option(None, 32, params * 4, 0.0)] + [
            Option(f"int{b}", b, params * b // 8 + params // 16, scale * 4.0 ** (4 - b))
            for b in (8, 4, 3, 2)
        ]
        units.append(UnitChoice(f"u{i}", options, sensitive=rng.random() < 0.2))
    return units


@pytest.mark.parametrize("seed", range(20))
def test_allocation_never_exceeds_the_budget_and_keeps_sensitive_units_above_4_bits(
    seed: int,
) -> None:
    rng = random.Random(seed)
    units = _random_units(rng, rng.randint(3, 40))
    base = sum(u.options[0].nbytes for u in units) + 1000
    budget = int(base * rng.uniform(0.05, 0.6))
    try:
        plan = allocate(units, 1000, budget, base)
    except BudgetError as exc:
        smallest = 1000 + sum(
            min(o.nbytes for o in u.options if not u.sensitive or o.bits > 4) for u in units
        )
        assert smallest > budget and f"{smallest / base:.4f}" in str(exc)
        return
    assert 1000 + sum(o.nbytes for o in plan.values()) <= budget
    for unit in units:
        if unit.sensitive:
            assert plan[unit.name].bits > 4


def test_allocation_spends_the_budget_where_kl_is_highest() -> None:
    cheap = [Option(None, 32, 400, 0.0), Option("int8", 8, 100, 0.01), Option("int2", 2, 25, 5.0)]
    calm = [
        Option(None, 32, 400, 0.0),
        Option("int8", 8, 100, 0.0001),
        Option("int2", 2, 25, 0.001),
    ]
    units = [UnitChoice("loud", cheap, False), UnitChoice("quiet", calm, False)]
    plan = allocate(units, 0, 130, 800)
    assert plan["loud"].format == "int8" and plan["quiet"].format == "int2"
