"""Language codes as each model family spells them.

Job configs use short ISO 639-1 codes (`en`, `zh`); NLLB wants FLORES-200 codes
(`eng_Latn`), M2M100 its own `__en__` tokens. A code already in the model's spelling
passes through, so users can name any language the model knows.
"""

from __future__ import annotations

# ISO 639-1 (and zh-Hant / yue, as HY-MT names them) -> FLORES-200, for NLLB.
FLORES_CODES: dict[str, str] = {
    "ar": "arb_Arab",
    "bn": "ben_Beng",
    "bo": "bod_Tibt",
    "cs": "ces_Latn",
    "da": "dan_Latn",
    "de": "deu_Latn",
    "el": "ell_Grek",
    "en": "eng_Latn",
    "es": "spa_Latn",
    "fa": "pes_Arab",
    "fi": "fin_Latn",
    "fr": "fra_Latn",
    "gu": "guj_Gujr",
    "he": "heb_Hebr",
    "hi": "hin_Deva",
    "hu": "hun_Latn",
    "id": "ind_Latn",
    "it": "ita_Latn",
    "ja": "jpn_Jpan",
    "kk": "kaz_Cyrl",
    "km": "khm_Khmr",
    "ko": "kor_Hang",
    "mn": "khk_Cyrl",
    "mr": "mar_Deva",
    "ms": "zsm_Latn",
    "my": "mya_Mymr",
    "nl": "nld_Latn",
    "no": "nob_Latn",
    "pl": "pol_Latn",
    "pt": "por_Latn",
    "ro": "ron_Latn",
    "ru": "rus_Cyrl",
    "sv": "swe_Latn",
    "ta": "tam_Taml",
    "te": "tel_Telu",
    "th": "tha_Thai",
    "tl": "tgl_Latn",
    "tr": "tur_Latn",
    "ug": "uig_Arab",
    "uk": "ukr_Cyrl",
    "ur": "urd_Arab",
    "vi": "vie_Latn",
    "yue": "yue_Hant",
    "zh": "zho_Hans",
    "zh-Hant": "zho_Hant",
}


def nllb_code(lang: str) -> str:
    """`de` -> `deu_Latn`; a FLORES code (`deu_Latn`) is returned unchanged."""
    if "_" in lang:
        return lang
    try:
        return FLORES_CODES[lang]
    except KeyError:
        raise ValueError(
            f"no NLLB (FLORES-200) code known for language {lang!r}; "
            "give the FLORES code directly, e.g. source_lang: deu_Latn"
        ) from None
