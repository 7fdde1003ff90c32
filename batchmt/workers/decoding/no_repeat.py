"""Repetition blocking for any decoder step: no n-gram twice in one hypothesis.

The QE fallback (`workers/quality/fallback.py`) re-decodes rows that fell into a loop
("ein Mann mit einem Hut und einem Hut und einem Hut"); a wider beam alone often finds the
same loop, blocking a repeated n-gram cannot. It wraps the model side of the search
(`DecoderStep`), so the search and its term constraints stay as they are.
"""

from __future__ import annotations

import math

import torch

from batchmt.workers.decoding.search import DecoderStep


class NoRepeatStep:
    """A `DecoderStep` that gives -inf to every token completing an n-gram the hypothesis
    already holds (Hugging Face's `no_repeat_ngram_size`, for our own search)."""

    def __init__(self, inner: DecoderStep, n: int) -> None:
        if n < 1:
            raise ValueError(f"no_repeat_ngram_size must be >= 1, got {n}")
        self.inner = inner
        self.n = n
        self.history: list[list[int]] = []

    def __call__(self, tokens: torch.Tensor | None) -> torch.Tensor:
        logp = self.inner(tokens)
        if tokens is None:
            self.history = [[] for _ in range(logp.shape[0])]
        else:
            for seen, token in zip(self.history, tokens.tolist(), strict=True):
                seen.append(int(token))
        for row, seen in enumerate(self.history):
            banned = self._banned(seen)
            if banned:
                logp[row, banned] = -math.inf
        return logp

    def _banned(self, seen: list[int]) -> list[int]:
        """Tokens that would end an n-gram already in `seen`."""
        n = self.n
        if len(seen) < n - 1:
            return []
        prefix = seen[len(seen) - n + 1 :] if n > 1 else []
        return [seen[i + n - 1] for i in range(len(seen) - n + 1) if seen[i : i + n - 1] == prefix]

    def reorder(self, index: torch.Tensor) -> None:
        self.inner.reorder(index)
        self.history = [list(self.history[i]) for i in index.tolist()]
