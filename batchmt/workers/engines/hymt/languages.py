"""HY-MT1.5's 38 language codes and the names its prompts use for them.

The prompts name the target language in words, not codes: in Chinese inside the Chinese
templates (ZH<=>XX, terminology, context, formatted), in English inside the XX<=>XX one.
Names follow the HY-MT1.5 model card's language table.
"""

from __future__ import annotations

from typing import NamedTuple

from batchmt.pipeline.text.languages import LanguageTagError, best_match


class LanguageNames(NamedTuple):
    english: str
    chinese: str


HY_MT_LANGUAGES: dict[str, LanguageNames] = {
    "zh": LanguageNames("Chinese", "中文"),
    "en": LanguageNames("English", "英语"),
    "fr": LanguageNames("French", "法语"),
    "pt": LanguageNames("Portuguese", "葡萄牙语"),
    "es": LanguageNames("Spanish", "西班牙语"),
    "ja": LanguageNames("Japanese", "日语"),
    "tr": LanguageNames("Turkish", "土耳其语"),
    "ru": LanguageNames("Russian", "俄语"),
    "ar": LanguageNames("Arabic", "阿拉伯语"),
    "ko": LanguageNames("Korean", "韩语"),
    "th": LanguageNames("Thai", "泰语"),
    "it": LanguageNames("Italian", "意大利语"),
    "de": LanguageNames("German", "德语"),
    "vi": LanguageNames("Vietnamese", "越南语"),
    "ms": LanguageNames("Malay", "马来语"),
    "id": LanguageNames("Indonesian", "印尼语"),
    "tl": LanguageNames("Filipino", "菲律宾语"),
    "hi": LanguageNames("Hindi", "印地语"),
    "zh-Hant": LanguageNames("Traditional Chinese", "繁体中文"),
    "pl": LanguageNames("Polish", "波兰语"),
    "cs": LanguageNames("Czech", "捷克语"),
    "nl": LanguageNames("Dutch", "荷兰语"),
    "km": LanguageNames("Khmer", "高棉语"),
    "my": LanguageNames("Burmese", "缅甸语"),
    "fa": LanguageNames("Persian", "波斯语"),
    "gu": LanguageNames("Gujarati", "古吉拉特语"),
    "ur": LanguageNames("Urdu", "乌尔都语"),
    "te": LanguageNames("Telugu", "泰卢固语"),
    "mr": LanguageNames("Marathi", "马拉地语"),
    "he": LanguageNames("Hebrew", "希伯来语"),
    "bn": LanguageNames("Bengali", "孟加拉语"),
    "ta": LanguageNames("Tamil", "泰米尔语"),
    "uk": LanguageNames("Ukrainian", "乌克兰语"),
    "bo": LanguageNames("Tibetan", "藏语"),
    "kk": LanguageNames("Kazakh", "哈萨克语"),
    "mn": LanguageNames("Mongolian", "蒙古语"),
    "ug": LanguageNames("Uyghur", "维吾尔语"),
    "yue": LanguageNames("Cantonese", "粤语"),
}


# Codes whose text is Chinese in the sense of HY-MT's "ZH<=>XX" templates.
_CHINESE = {"zh", "zh-Hant", "yue"}


def hy_mt_code(lang: str) -> str:
    """A job's language tag in HY-MT's spelling, by BCP 47 matching (`zh-TW` and `zh-HK` ->
    `zh-Hant`, `zh-CN` -> `zh`, `fil` -> `tl`, `iw` -> `he`), or say which codes exist."""
    if lang in HY_MT_LANGUAGES:
        return lang
    try:
        code = best_match(lang, HY_MT_LANGUAGES)
    except LanguageTagError:
        code = None
    if code is not None:
        return code
    known = ", ".join(HY_MT_LANGUAGES)
    raise ValueError(f"HY-MT does not know language {lang!r}; its codes are: {known}")


def language_names(lang: str) -> LanguageNames:
    return HY_MT_LANGUAGES[hy_mt_code(lang)]


def is_chinese(lang: str) -> bool:
    return hy_mt_code(lang) in _CHINESE
