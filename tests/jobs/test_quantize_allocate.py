"""jobs/quantize/allocate.py: the allocation under a budget and the sensitive-unit rule."""

from __future__ import annotations

import random

import pytest

from batchmt.jobs.quantize.allocate import BudgetError, Option, UnitChoice, allocate


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
