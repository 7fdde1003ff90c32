"""Length-sorted, token-budgeted batches that give results back in input order.

Sorting by length inside a shard cuts padding (the DESIGN measured 1.4x on beam search);
cutting by a padded-token budget keeps memory flat whether segments are short or long.
"""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(
    lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int
) -> list[list[int]]:
    """Group indices into batches whose padded size (rows x longest) fits the budget.

    Longest first, so the first batch shows the peak memory early (an out-of-memory
    shows up on batch one, not an hour in). A single row longer than the budget still
    gets a batch of its own: the budget bounds padding waste, not what can be translated.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        length = max(1, lengths[index])
        width = max(longest, length)
        if current and (
            width * (len(current) + 1) > max_batch_tokens or len(current) >= max_batch_size
        ):
            batches.append(current)
            current, width = [], length
        current.append(index)
        longest = width
    if current:
        batches.append(current)
    return batches
