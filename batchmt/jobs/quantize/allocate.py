"""Bit widths per unit under a size budget.

Each unit picks one option: its checkpoint dtype (no quantization, KL 0) or a format. The
objective is the summed measured KL; the constraint, total weight bytes (quantized units,
plus every tensor that is never quantized) <= budget. A unit marked sensitive (its KL in
int4 at or above the threshold) may only take options of more than 4 bits.

Greedy multiple-choice knapsack: start every unit at its smallest allowed option, then take,
while the budget allows, the upgrade with the largest KL saved per byte spent. Never above
the budget by construction; if the smallest plan is already above it, no plan exists, and the
error says how small a plan can get.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from batchmt.workers.quantization import QuantizationError


class BudgetError(QuantizationError):
    """No plan meets the size budget."""


@dataclass(frozen=True)
class Option:
    format: str | None  # None = the checkpoint's own dtype
    bits: int  # 16 / 32 for the checkpoint dtype
    nbytes: int
    kl: float


@dataclass
class UnitChoice:
    name: str
    options: list[Option]  # every option the unit may take
    sensitive: bool


def allowed(options: Sequence[Option], sensitive: bool) -> list[Option]:
    return [o for o in options if not sensitive or o.bits > 4]


def smallest_bytes(units: Sequence[UnitChoice], fixed_bytes: int) -> int:
    return fixed_bytes + sum(min(o.nbytes for o in allowed(u.options, u.sensitive)) for u in units)


def allocate(
    units: Sequence[UnitChoice], fixed_bytes: int, budget_bytes: int, base_bytes: int
) -> dict[str, Option]:
    """The chosen option per unit name; BudgetError when even the smallest plan is too big."""
    smallest = smallest_bytes(units, fixed_bytes)
    if smallest > budget_bytes:
        raise BudgetError(
            f"no plan fits max_size_ratio {budget_bytes / base_bytes:.4f}: the smallest reachable "
            f"is {smallest / base_bytes:.4f} (every unit in its smallest allowed format; "
            "sensitive units stay above 4 bits). Raise quantize.max_size_ratio, add a smaller "
            "format to quantize.formats or raise quantize.sensitive_kl"
        )
    choice = {
        u.name: min(allowed(u.options, u.sensitive), key=lambda o: (o.nbytes, o.kl)) for u in units
    }
    spent = sum(o.nbytes for o in choice.values()) + fixed_bytes
    while True:
        best: tuple[float, str, Option] | None = None
        for unit in units:
            current = choice[unit.name]
            for option in allowed(unit.options, unit.sensitive):
                extra = option.nbytes - current.nbytes
                saved = current.kl - option.kl
                if extra <= 0 or saved <= 0 or spent + extra > budget_bytes:
                    continue
                gain = saved / extra
                if best is None or gain > best[0]:
                    best = (gain, unit.name, option)
        if best is None:
            return choice
        _, name, option = best
        spent += option.nbytes - choice[name].nbytes
        choice[name] = option
