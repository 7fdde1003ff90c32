"""HY-MT1.5 prompts are the model card's templates to the character; answers are cleaned."""

from __future__ import annotations

import pytest

from batchmt.workers.engines.base import Segment
from batchmt.workers.engines.hymt.languages import (
    HY_MT_LANGUAGES,
    hy_mt_code,
    is_chinese,
    language_names,
)
from batchmt.workers.engines.hymt.prompts import PromptBuilder, strip_echoed_context, strip_target

# Golden strings: each official template filled in by hand, as the model card shows them.
GOLDEN = [
    pytest.param(
        ("zh", "en", Segment("混元是腾讯的大模型。")),
        "将以下文本翻译为英语，注意只需要输出翻译后的结果，不要额外解释：\n\n混元是腾讯的大模型。",
        id="zh-xx",
    ),
    pytest.param(
        ("de", "zh", Segment("Ein Mann geht.")),
        "将以下文本翻译为中文，注意只需要输出翻译后的结果，不要额外解释：\n\nEin Mann geht.",
        id="xx-zh",
    ),
    pytest.param(
        ("en", "de", Segment("A man walks.")),
        "Translate the following segment into German, without additional explanation.\n\n"
        "A man walks.",
        id="xx-xx",
    ),
    pytest.param(
        ("zh", "en", Segment("混元很强。", terms=(("混元", "HunYuan"),))),
        "参考下面的翻译：\n混元 翻译成 HunYuan\n\n"
        "将以下文本翻译为英语，注意只需要输出翻译后的结果，不要额外解释：\n混元很强。",
        id="terminology",
    ),
    pytest.param(
        (
            "en",
            "de",
            Segment(
                "HunYuan is a model by Tencent.",
                terms=(
                    ("HunYuan", "HunYuan"),
                    ("Tencent", "Tencent"),
                    ("HunYuan", "HunYuan"),
                ),
            ),
        ),
        "参考下面的翻译：\nHunYuan 翻译成 HunYuan\nTencent 翻译成 Tencent\n\n"
        "将以下文本翻译为德语，注意只需要输出翻译后的结果，不要额外解释：\n"
        "HunYuan is a model by Tencent.",
        id="terminology-several-terms",
    ),
    pytest.param(
        ("en", "zh", Segment("He left.", context=("Tom met Ann.", "They talked."))),
        "Tom met Ann.\nThey talked.\n"
        "参考上面的信息，把下面的文本翻译成中文，注意不需要翻译上文，也不要额外解释：\nHe left.\n",
        id="contextual",
    ),
    pytest.param(
        ("en", "zh", Segment("He left.", context=("Tom met Ann.",), terms=(("He", "他"),))),
        "参考下面的翻译：\nHe 翻译成 他\n\n"
        "将以下文本翻译为中文，注意只需要输出翻译后的结果，不要额外解释：\nHe left.",
        id="terms-take-precedence-over-context",
    ),
]


@pytest.mark.parametrize(("case", "expected"), GOLDEN)
def test_prompt_is_the_official_template(case: tuple[str, str, Segment], expected: str) -> None:
    source, target, segment = case
    assert PromptBuilder(source, target).for_segment(segment) == expected


def test_formatted_prompt_is_the_official_template() -> None:
    prompt = PromptBuilder("en", "zh").formatted("Click <sn>Save</sn> now.")
    assert prompt == (
        "将以下<source></source>之间的文本翻译为中文，注意只需要输出翻译后的结果，不要额外解释，"
        "原文中的<sn></sn>标签表示标签内文本包含格式信息，需要在译文中相应的位置尽量保留该标签。"
        "输出格式为：<target>str</target>\n\n<source>Click <sn>Save</sn> now.</source>"
    )


def test_formatted_prompt_names_other_targets_in_chinese() -> None:
    prompt = PromptBuilder("zh", "fr").formatted("<sn>保存</sn>")
    assert "之间的文本翻译为法语，" in prompt


def test_language_table_has_hy_mts_38_codes() -> None:
    assert len(HY_MT_LANGUAGES) == 38
    assert language_names("zh-Hant").chinese == "繁体中文"
    assert language_names("ja") == ("Japanese", "日语")
    assert hy_mt_code("zh-TW") == "zh-Hant"
    assert is_chinese("yue") and not is_chinese("ja")


def test_unknown_language_names_the_known_codes() -> None:
    with pytest.raises(ValueError, match="HY-MT does not know language 'sw'; its codes are: zh"):
        PromptBuilder("en", "sw")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("<target>Hello <sn>world</sn></target>", "Hello <sn>world</sn>"),
        ("<target>cut off by the length bound", "cut off by the length bound"),
        ("no wrapper", "no wrapper"),
        ("Sure: <target>x</target> trailing", "x"),
        ("stray </target>", "stray "),
    ],
)
def test_strip_target(answer: str, expected: str) -> None:
    assert strip_target(answer) == expected


@pytest.mark.parametrize(
    ("answer", "context", "expected"),
    [
        ("Tom met Ann.\nThey talked.\nEr ging.", ("Tom met Ann.", "They talked."), "Er ging."),
        ("They talked.\nEr ging.", ("Tom met Ann.", "They talked."), "Er ging."),
        ("Tom met Ann. Er ging.", ("Tom met Ann.",), "Er ging."),
        ("Er ging.", ("Tom met Ann.",), "Er ging."),
        # An answer that is only a context line is kept: it may be the real translation.
        ("Tom met Ann.", ("Tom met Ann.", "x"), "Tom met Ann."),
        ("Er ging.", (), "Er ging."),
        ("OK.", ("OK.",), "OK."),
        ("OK.go", ("OK.",), "OK.go"),
    ],
)
def test_echoed_context_is_stripped(answer: str, context: tuple[str, ...], expected: str) -> None:
    assert strip_echoed_context(answer, context) == expected
