"""Sentence boundaries: the issue's abbreviation cases and 56 hand-checked paragraphs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from batchmt.workers.sentences import split_sentences

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "sentences.jsonl"
PARAGRAPHS = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]

# Where the segmenter and the reader still disagree, by fixture line (1-based). Each is a
# missed or wrong cut that no rule fixes without breaking another case; listed so that a
# regression and an improvement both fail this test and get looked at.
KNOWN_MISSES = {
    None: {14, 46},  # a.m. | Drive (missed: the de/fr votes); 我等了又等…… | 还是 (missed)
    "lang": {6, 40, 46},  # vol. | 2 (en), l'art. | 4 (fr), and the Chinese ellipsis
}


@pytest.mark.parametrize("lang", ["en", None])
def test_english_abbreviations_are_not_ends(lang: str | None) -> None:
    text = "Dr. Smith met Mr. Jones at 5 p.m. yesterday. See e.g. the U.S. Army report."
    assert split_sentences(text, lang) == [
        ("Dr. Smith met Mr. Jones at 5 p.m. yesterday.", " "),
        ("See e.g. the U.S. Army report.", ""),
    ]


@pytest.mark.parametrize("lang", ["fr", None])
def test_french_date_is_one_sentence(lang: str | None) -> None:
    text = "Il est né le 3. janv. 1990 à Paris. Il vit à Lyon."
    assert [s for s, _ in split_sentences(text, lang)] == [
        "Il est né le 3. janv. 1990 à Paris.",
        "Il vit à Lyon.",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Am 1. Mai ist Feiertag. Wir feiern.",
        "Lies bis zum 5. Kapitel. Dann reden wir.",
        "Das war im 20. Jahrhundert. Heute nicht mehr.",
    ],
)
def test_german_ordinals_are_not_ends(text: str) -> None:
    assert len(split_sentences(text)) == len(split_sentences(text, "de")) == 2


def test_a_number_can_still_end_a_sentence() -> None:
    text = "The score was 42. Then we left."
    assert [s for s, _ in split_sentences(text)] == ["The score was 42.", "Then we left."]


@pytest.mark.parametrize("known", [True, False])
def test_hand_checked_paragraphs(known: bool) -> None:
    misses = set()
    for line, row in enumerate(PARAGRAPHS, 1):
        got = [s for s, _ in split_sentences(row["text"], row["lang"] if known else None)]
        if got != row["sentences"]:
            misses.add(line)
    assert len(PARAGRAPHS) >= 50
    assert {r["lang"] for r in PARAGRAPHS} == {"en", "de", "fr", "zh"}
    assert misses == KNOWN_MISSES["lang" if known else None]


def test_pieces_give_back_the_text_and_its_whitespace() -> None:
    for row in PARAGRAPHS:
        pieces = split_sentences(row["text"])
        assert "".join(s + sep for s, sep in pieces) == row["text"]
    text = "First line.\n\nSecond one.   Third!\t"
    assert split_sentences(text) == [
        ("First line.", "\n\n"),
        ("Second one.", "   "),
        ("Third!", "\t"),
    ]


def test_chinese_needs_no_space_and_quotes_stay_with_their_sentence() -> None:
    text = "他说：“你好。”然后走了。我们三点见面；别迟到。"
    assert split_sentences(text, "zh") == [
        ("他说：“你好。”", ""),
        ("然后走了。", ""),
        ("我们三点见面；别迟到。", ""),
    ]


def test_empty_and_single_sentence() -> None:
    assert split_sentences("") == []
    assert split_sentences("no full stop at all") == [("no full stop at all", "")]
    assert split_sentences("   ") == [("   ", "")]


def test_long_text_is_linear() -> None:
    text = " ".join(r["text"] for r in PARAGRAPHS if r["lang"] == "en") * 100
    start = time.perf_counter()
    pieces = split_sentences(text)
    assert time.perf_counter() - start < 5  # 0.25 s measured; pysbd takes about 60 s
    assert "".join(s + sep for s, sep in pieces) == text
