from __future__ import annotations

import pytest
from sacrebleu.metrics import BLEU, CHRF

from batchmt.pipeline import status
from batchmt.pipeline.quality.samples import (
    QualitySettings,
    ShardRows,
    merge_quality,
    repeated_ngram_ratio,
    row_flags,
    sample_indices,
    shard_quality,
)

SIGNATURE = {"model": "tiny-marian", "quantization": "int8"}
SETTINGS = QualitySettings(sample_size=100, signature=SIGNATURE)

HYPS = [
    "The cat sits on the mat.",
    "A man rides a bicycle down the street.",
    "Two dogs play in the park.",
    "She reads a book under the tree.",
    "Children are playing football outside.",
    "The sun sets behind the mountains.",
]
REFS = [
    "The cat is sitting on the mat.",
    "A man is riding a bike down the street.",
    "Two dogs are playing in a park.",
    "She is reading a book under a tree.",
    "Kids play soccer outside.",
    "The sun goes down behind the mountains.",
]


def test_sample_is_deterministic_and_depends_on_shard():
    first = sample_indices("00003", 1000, 10)
    assert first == sample_indices("00003", 1000, 10)
    assert first == sorted(set(first)) and len(first) == 10
    assert all(0 <= i < 1000 for i in first)
    assert first != sample_indices("00004", 1000, 10)
    assert sample_indices("x", 3, 10) == [0, 1, 2]
    assert sample_indices("x", 3, 0) == []


@pytest.mark.parametrize(
    ("source", "translation", "flags"),
    [
        ("Ein Hund läuft.", "A dog runs.", []),
        ("Ein Hund läuft.", "", ["empty_output"]),
        ("Ein Hund läuft.", "ein hund läuft.", ["untranslated"]),
        ("Berlin", "Berlin", []),  # names are copied legitimately... and are short
        ("Hallo", "Hello " * 20, ["length_ratio", "repeated_ngrams"]),
    ],
)
def test_row_flags(source: str, translation: str, flags: list[str]):
    assert row_flags(source, translation)[0] == flags


def test_repeated_ngram_ratio_for_words_and_characters():
    assert repeated_ngram_ratio("a b c d e f") == 0.0
    assert repeated_ngram_ratio("the the the the the the the") > 0.7
    assert repeated_ngram_ratio("我爱你我爱你我爱你我爱你") > 0.5


def test_shard_quality_is_deterministic_and_signed():
    n = len(HYPS)
    statuses = [status.OK] * (n - 1) + [status.FAILED]
    translations = [*HYPS[:-1], None]
    rows = ShardRows("00001", HYPS, translations, statuses, REFS, ids=list(range(n)))
    settings = QualitySettings(sample_size=4, signature=SIGNATURE)
    a = shard_quality(rows, settings)
    b = shard_quality(rows, settings)
    assert a == b
    assert a["sample_size"] == 4 and len(a["samples"]) == 4
    assert a["signature"]["model"] == "tiny-marian"
    assert a["signature"]["bleu"].startswith("nrefs:1")
    assert "sacrebleu" in a["signature"]
    assert [s["index"] for s in a["samples"]] == sample_indices("00001", n, 4)
    assert a["samples"][0]["id"] == a["samples"][0]["index"]


def test_no_references_means_no_scores():
    q = shard_quality(ShardRows("0", ["x y z"], ["x y z"], [status.OK]), SETTINGS)
    assert q["reference"] is None
    assert q["flag_counts"]["untranslated"] == 1
    assert merge_quality([q])["bleu"] is None


def test_merged_statistics_equal_scores_of_the_whole():
    n = len(HYPS)
    ok = [status.OK] * n
    first = shard_quality(ShardRows("00000", REFS[:3], HYPS[:3], ok[:3], REFS[:3]), SETTINGS)
    second = shard_quality(ShardRows("00001", REFS[3:], HYPS[3:], ok[3:], REFS[3:]), SETTINGS)
    merged = merge_quality([first, second])
    assert merged["bleu"] == pytest.approx(BLEU().corpus_score(HYPS, [REFS]).score, abs=1e-9)
    assert merged["chrf"] == pytest.approx(CHRF().corpus_score(HYPS, [REFS]).score, abs=1e-9)
    assert merged["reference_segments"] == n
    assert merged["sampled_rows"] == n and merged["checked"] == n
    # the shard's own score is the score of its part alone
    assert first["reference"]["bleu"] == pytest.approx(
        BLEU().corpus_score(HYPS[:3], [REFS[:3]]).score
    )


def test_rows_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match=r"shard 00007: row sequences differ in length"):
        ShardRows("00007", ["a", "b"], ["A"], [status.OK, status.OK])
