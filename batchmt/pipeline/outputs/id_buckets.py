"""Counting ids of a whole input against a whole output without holding either in memory.

`batchmt verify` of an `input.since` output compares every input id with every run's rows,
which no shard-by-shard walk can pair up (a run's file holds ids of many input files). Ids are
spilled to disk instead, split by a hash of their key into buckets small enough to count one
at a time: memory is one batch of ids while spilling, then one bucket (about
`BUCKET_ROWS` ids) while counting. Keys are `pipeline.ids.id_keys` values (hashable, equal
exactly when ids are), each with its JSON spelling for the report's samples.
"""

from __future__ import annotations

import math
import os
import pickle
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from batchmt.pipeline.ids import JsonScalar

# Ids per bucket when counting: about 30 MB of Python objects at 300 B an id.
BUCKET_ROWS = 100_000


@dataclass
class BucketCounts:
    """What one side's ids and the other's disagree on, summed over the buckets."""

    missing: int = 0  # input rows whose id the output lacks (or has too few times)
    duplicated: int = 0  # ids written more often than they occur in the input
    unexpected: int = 0  # output rows whose id is not in the input
    missing_ids: list[JsonScalar] = field(default_factory=list)
    duplicated_ids: list[JsonScalar] = field(default_factory=list)
    unexpected_ids: list[JsonScalar] = field(default_factory=list)


class IdSpill:
    """Two sides (input, output) of ids spilled to hash buckets in a temporary folder."""

    def __init__(self, expected_rows: int) -> None:
        self.buckets = max(1, math.ceil(expected_rows / BUCKET_ROWS))
        self._dir = tempfile.TemporaryDirectory(prefix="batchmt-verify-")
        self._files: dict[tuple[str, int], BinaryIO] = {}

    def __enter__(self) -> IdSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self._files.values():
            f.close()
        self._dir.cleanup()

    def _file(self, side: str, bucket: int) -> BinaryIO:
        key = (side, bucket)
        if key not in self._files:
            path = os.path.join(self._dir.name, f"{side}-{bucket:05d}.pkl")
            self._files[key] = open(path, "w+b")  # noqa: SIM115 - closed in __exit__
        return self._files[key]

    def add(self, side: str, keys: Sequence[Any], spellings: Sequence[JsonScalar]) -> None:
        """Spill one batch of (non-null) keys of `side` ("in" or "out")."""
        split: dict[int, list[tuple[Any, JsonScalar]]] = {}
        for key, spelt in zip(keys, spellings, strict=True):
            split.setdefault(hash(key) % self.buckets, []).append((key, spelt))
        for bucket, pairs in split.items():
            pickle.dump(pairs, self._file(side, bucket), protocol=pickle.HIGHEST_PROTOCOL)

    def _read(self, side: str, bucket: int) -> Iterator[tuple[Any, JsonScalar]]:
        f = self._files.get((side, bucket))
        if f is None:
            return
        f.flush()
        f.seek(0)
        while True:
            try:
                yield from pickle.load(f)
            except EOFError:
                return

    def compare(self, sample: int) -> BucketCounts:
        """Count bucket by bucket: input ids against output ids, with a few of each kind."""
        out = BucketCounts()
        for bucket in range(self.buckets):
            spelling: dict[Any, JsonScalar] = {}
            n_in: Counter[Any] = Counter()
            for key, spelt in self._read("in", bucket):
                n_in[key] += 1
                spelling.setdefault(key, spelt)
            n_out: Counter[Any] = Counter()
            for key, spelt in self._read("out", bucket):
                n_out[key] += 1
                spelling.setdefault(key, spelt)
            for key, n in n_in.items():
                short = n - n_out.get(key, 0)
                if short > 0:
                    out.missing += short
                    _keep(out.missing_ids, spelling[key], sample)
            for key, n in n_out.items():
                if key not in n_in:
                    out.unexpected += n
                    _keep(out.unexpected_ids, spelling[key], sample)
                elif n > n_in[key]:
                    out.duplicated += 1
                    _keep(out.duplicated_ids, spelling[key], sample)
        return out


def _keep(found: list[JsonScalar], value: JsonScalar, sample: int) -> None:
    if len(found) < sample:
        found.append(value)
