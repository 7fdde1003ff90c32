"""Language tags by BCP 47 matching: glossary units, NLLB and HY-MT codes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from batchmt.pipeline.text.glossary_files import GlossaryError, load_glossary
from batchmt.pipeline.text.languages import best_match, normalize, same_language
from batchmt.workers.engines.hymt.languages import hy_mt_code
from batchmt.workers.engines.nllb_codes import FLORES_200, nllb_code


@pytest.mark.parametrize(
    ("tag", "job"),
    [
        ("zh-TW", "zh-Hant"),
        ("zh-HK", "zh-Hant"),
        ("zh-CN", "zh"),
        ("nb", "no"),
        ("iw", "he"),
        ("in", "id"),
        ("en-US", "en"),
        ("EN_gb", "en"),
        ("de-DE", "de"),
        ("eng", "en"),
        ("deu_Latn", "de"),
        ("tl", "fil"),
        ("cmn", "zh"),
    ],
)
def test_same_language(tag: str, job: str) -> None:
    assert same_language(tag, job)
    assert same_language(job, tag)


@pytest.mark.parametrize(
    ("tag", "job"),
    [
        ("zh-TW", "zh"),  # Traditional terms in a Simplified job
        ("zh-Hans", "zh-Hant"),
        ("nn", "no"),  # Nynorsk is not what a `no` job writes
        ("yue", "zh"),
        ("sr-Latn", "sr"),  # Serbian is Cyrillic unless it says otherwise
        ("en-GB", "en-US"),  # both name a region, and not the same
        ("fr", "en"),
        ("not a tag", "en"),
    ],
)
def test_different_language(tag: str, job: str) -> None:
    assert not same_language(tag, job)


def test_normalize_and_best_match() -> None:
    assert normalize("iw") == "he"
    assert normalize("zh_tw") == "zh-TW"
    assert best_match("zh-TW", ["zh", "zh-Hant", "yue"]) == "zh-Hant"
    assert best_match("tw", ["aka-Latn", "twi-Latn"]) == "twi-Latn"  # own code before kin
    assert best_match("ja", ["zh", "ko"]) is None


# The 45 codes the hand-written table had: BCP 47 resolution must keep every one.
_OLD_TABLE = dict(
    pair.split("=")
    for pair in (
        "ar=arb_Arab bn=ben_Beng bo=bod_Tibt cs=ces_Latn da=dan_Latn de=deu_Latn el=ell_Grek "
        "en=eng_Latn es=spa_Latn fa=pes_Arab fi=fin_Latn fr=fra_Latn gu=guj_Gujr he=heb_Hebr "
        "hi=hin_Deva hu=hun_Latn id=ind_Latn it=ita_Latn ja=jpn_Jpan kk=kaz_Cyrl km=khm_Khmr "
        "ko=kor_Hang mn=khk_Cyrl mr=mar_Deva ms=zsm_Latn my=mya_Mymr nl=nld_Latn no=nob_Latn "
        "pl=pol_Latn pt=por_Latn ro=ron_Latn ru=rus_Cyrl sv=swe_Latn ta=tam_Taml te=tel_Telu "
        "th=tha_Thai tl=tgl_Latn tr=tur_Latn ug=uig_Arab uk=ukr_Cyrl ur=urd_Arab vi=vie_Latn "
        "yue=yue_Hant zh=zho_Hans zh-Hant=zho_Hant"
    ).split()
)


@pytest.mark.parametrize(("lang", "code"), sorted(_OLD_TABLE.items()))
def test_nllb_keeps_the_old_table(lang: str, code: str) -> None:
    assert nllb_code(lang) == code


@pytest.mark.parametrize(
    ("lang", "code"),
    [
        ("zh-TW", "zho_Hant"),
        ("iw", "heb_Hebr"),
        ("nb", "nob_Latn"),
        ("nn", "nno_Latn"),
        ("pt-BR", "por_Latn"),
        ("sw", "swh_Latn"),
        ("lv", "lvs_Latn"),
        ("fa-AF", "prs_Arab"),
        ("ps", "pbt_Arab"),
        ("sr", "srp_Cyrl"),
        ("ks", "kas_Arab"),
        ("deu_Latn", "deu_Latn"),
    ],
)
def test_nllb_resolves_bcp47_tags(lang: str, code: str) -> None:
    assert nllb_code(lang) == code


def test_every_nllb_language_is_reachable_by_its_bcp47_tag() -> None:
    unreachable = [c for c in FLORES_200 if nllb_code(normalize(c.replace("_", "-"))) != c]
    assert unreachable == []
    assert len(FLORES_200) == len(set(FLORES_200)) == 202


def test_nllb_unknown_language_names_the_fix() -> None:
    with pytest.raises(ValueError, match="give the FLORES code directly"):
        nllb_code("sr-Latn")  # NLLB has Serbian in Cyrillic only


@pytest.mark.parametrize(
    ("lang", "code"),
    [("zh-TW", "zh-Hant"), ("zh-HK", "zh-Hant"), ("zh-CN", "zh"), ("fil", "tl"), ("iw", "he")],
)
def test_hy_mt_codes(lang: str, code: str) -> None:
    assert hy_mt_code(lang) == code


TMX = """<?xml version="1.0" encoding="UTF-8"?>
<tmx version="1.4"><header srclang="en" datatype="plaintext" segtype="phrase"
  adminlang="en" creationtool="x" creationtoolversion="1" o-tmf="x"/><body>
  <tu><tuv xml:lang="en"><seg>software</seg></tuv><tuv xml:lang="zh-TW"><seg>軟體</seg></tuv></tu>
  <tu><tuv xml:lang="en"><seg>printer</seg></tuv><tuv xml:lang="nb"><seg>skriver</seg></tuv></tu>
  <tu><tuv xml:lang="en"><seg>window</seg></tuv><tuv xml:lang="iw"><seg>חלון</seg></tuv></tu>
</body></tmx>
"""


@pytest.mark.parametrize(
    ("job", "source", "target"),
    [("zh-Hant", "software", "軟體"), ("no", "printer", "skriver"), ("he", "window", "חלון")],
)
def test_tmx_units_load_for_their_bcp47_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, job: str, source: str, target: str
) -> None:
    path = tmp_path / "g.tmx"
    path.write_text(TMX, encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="batchmt.pipeline.text.glossary_files"):
        glossary = load_glossary(str(path), "en", job)
    assert [(t.source, t.target) for t in glossary.terms.values()] == [(source, target)]
    assert "2 unit(s) for other languages skipped" in caplog.text


def test_glossary_without_terms_for_the_pair_fails_naming_its_languages(tmp_path: Path) -> None:
    path = tmp_path / "g.tmx"
    path.write_text(TMX, encoding="utf-8")
    with pytest.raises(GlossaryError, match=r"no terms for en -> zh: .* en, iw, nb, zh-TW"):
        load_glossary(str(path), "en", "zh")  # Simplified job, Traditional glossary


def test_table_language_columns_match_as_bcp47(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text(
        "source,target,source_lang,target_lang\ncolor,颜色,en-US,zh-CN\ncolor,顏色,en-US,zh-TW\n",
        encoding="utf-8",
    )
    hant = load_glossary(str(path), "en", "zh-Hant")
    hans = load_glossary(str(path), "en", "zh")
    assert [t.target for t in hant.terms.values()] == ["顏色"]
    assert [t.target for t in hans.terms.values()] == ["颜色"]
    with pytest.raises(GlossaryError, match="en-US, zh-CN, zh-TW"):
        load_glossary(str(path), "en", "ja")
