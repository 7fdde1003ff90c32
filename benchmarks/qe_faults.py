"""A faulty translation set from the shared Multi30k dev splits, for row-level QE.

Half the rows carry their correct (human) reference as the translation; the other half
carry one injected fault each, in equal numbers: the reference in the wrong language
(French), the source copied, the reference of a different row, the first half of the
reference, and a repetition loop. Deterministic (seeded), so numbers are comparable
between runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"
FAULTS = ("wrong_language", "copied_source", "other_row", "truncated", "repetition")
CORRECT = "correct"


@dataclass(frozen=True)
class FaultyRow:
    id: int
    source: str
    translation: str
    reference: str
    fault: str  # CORRECT or one of FAULTS


def _lines(split: str, lang: str, data: Path) -> list[str]:
    path = data / f"{split}.{lang}"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the shared data folder (../shared/data)")
    return path.read_text(encoding="utf-8").splitlines()


def _inject(fault: str, i: int, en: list[str], de: list[str], fr: list[str]) -> str:
    words = de[i].split()
    half = words[: max(1, len(words) // 2)]
    if fault == "wrong_language":
        return fr[i]
    if fault == "copied_source":
        return en[i]
    if fault == "other_row":
        return de[(i + len(de) // 2) % len(de)]  # far away: not a near-duplicate caption
    if fault == "truncated":
        return " ".join(half)
    if fault == "repetition":
        loop = half[-2:] if len(half) >= 2 else half
        return " ".join(half + loop * 6)
    raise ValueError(f"unknown fault {fault!r}")


def faulty_set(
    split: str = "val", size: int | None = None, data: Path = DATA, half: str = "all"
) -> list[FaultyRow]:
    """`size` rows of `split` (all by default): half correct, half faulty. `half`: "all",
    or the "even" / "odd" lines only (one half calibrates, the other checks)."""
    en, de, fr = (_lines(split, lang, data) for lang in ("en", "de", "fr"))
    order = list(range(len(en)))
    if half != "all":
        if half not in ("even", "odd"):
            raise ValueError(f"half must be all, even or odd, got {half!r}")
        order = order[half == "odd" :: 2]
    random.Random(12).shuffle(order)
    order = order[: size or len(order)]
    rows = []
    for n, i in enumerate(order):
        fault = CORRECT if n % 2 == 0 else FAULTS[(n // 2) % len(FAULTS)]
        text = de[i] if fault == CORRECT else _inject(fault, i, en, de, fr)
        rows.append(FaultyRow(i, en[i], text, de[i], fault))
    return rows
