"""Cross-attention alignment over real (tiny, random) architectures."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchmt.workers.engines.alignment import align
from batchmt.workers.engines.base import Alignment

PAIRS = [
    ("a man is walking.", "ein mann geht."),
    ("two dogs", "zwei hunde sind im park und spielen"),
    ("a", "ein"),
    ("the red ball is in the water with the dog.", "der ball"),
]


@pytest.mark.parametrize("fixture", ["tiny_marian", "tiny_m2m100"])
def test_one_alignment_per_pair_sized_by_words(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    path: Path = request.getfixturevalue(fixture)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSeq2SeqLM.from_pretrained(str(path)).eval()
    before = model.config._attn_implementation
    sources, targets = [s for s, _ in PAIRS], [t for _, t in PAIRS]
    found = align(model, tokenizer, sources, targets, batch_size=3)
    assert model.config._attn_implementation == before  # generation keeps its kernel
    for (source, target), alignment in zip(PAIRS, found):
        assert alignment.source_words == len(source.split())
        assert alignment.target_words == len(target.split())
        for s in range(alignment.source_words):
            assert alignment.targets_of(s)  # every source word lands somewhere
            assert all(0 <= t < alignment.target_words for t in alignment.targets_of(s))


def test_mismatched_lengths_are_refused(tiny_marian: Path) -> None:
    with pytest.raises(ValueError, match="one target per source"):
        align(object(), object(), ["a"], [])


def test_targets_prefer_the_words_that_chose_the_source() -> None:
    alignment = Alignment(best_source=(0, 0, 1), best_target=(2, 2))
    assert alignment.targets_of(0) == [0, 1]
    assert alignment.targets_of(1) == [2]
    assert (1, 2) in alignment.links
