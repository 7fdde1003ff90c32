from __future__ import annotations

import pytest

from batchmt.workers.batching import plan_batches

CASES = [
    # lengths, budget, max rows, expected batches (indices)
    ([5, 5, 5, 5], 10, 64, [[0, 1], [2, 3]]),
    ([1, 9, 3], 100, 2, [[1, 2], [0]]),
    ([50], 10, 64, [[0]]),  # a row over budget still gets a batch of its own
    ([], 10, 64, []),
    ([4, 8, 2, 8], 16, 64, [[1, 3], [0, 2]]),
]


@pytest.mark.parametrize(("lengths", "budget", "rows", "expected"), CASES)
def test_plan_batches(
    lengths: list[int], budget: int, rows: int, expected: list[list[int]]
) -> None:
    assert plan_batches(lengths, budget, rows) == expected


def test_every_index_once_and_budget_respected() -> None:
    lengths = [(i * 37) % 23 + 1 for i in range(500)]
    batches = plan_batches(lengths, 64, 16)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(500))
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) <= 16
        assert len(batch) == 1 or width * len(batch) <= 64
