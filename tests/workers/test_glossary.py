"""Glossary files, per-row glossaries, term matching and the adherence check."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchmt.pipeline.text.glossary import (
    Glossary,
    RowGlossaryError,
    Term,
    check_terms,
    parse_row_glossary,
)
from batchmt.pipeline.text.glossary_files import GlossaryError, load_glossary


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


TMX = """<?xml version="1.0" encoding="UTF-8"?>
<tmx version="1.4">
  <header srclang="en" datatype="plaintext" segtype="phrase" adminlang="en"
          creationtool="t" creationtoolversion="1" o-tmf="t"/>
  <body>
    <tu>
      <tuv xml:lang="en-US"><seg>dog</seg></tuv>
      <tuv xml:lang="de-DE"><seg>Hund</seg></tuv>
    </tu>
    <tu>
      <tuv xml:lang="en"><seg>cat</seg></tuv>
      <tuv xml:lang="fr"><seg>chat</seg></tuv>
    </tu>
    <tu>
      <tuv xml:lang="en"><seg>red <ph>&lt;b/&gt;</ph>car</seg></tuv>
      <tuv xml:lang="de"><seg>rotes Auto</seg></tuv>
    </tu>
  </body>
</tmx>
"""


def test_tsv_loads_with_header_and_comments_as_terms(tmp_path: Path) -> None:
    url = write(tmp_path, "g.tsv", "source\ttarget\nman\tMann\n\nstreet\tStraße\nman\tMann\n")
    glossary = load_glossary(url, "en", "de")
    assert sorted(t.target for t in glossary.terms.values()) == ["Mann", "Straße"]


def test_csv_filters_languages_and_reads_case_flag(tmp_path: Path) -> None:
    url = write(
        tmp_path,
        "g.csv",
        "source,target,case_sensitive,source_lang,target_lang\n"
        'Apple,"Apple Inc.",true,en,de\n'
        "apple,Apfel,false,en,de\n"
        "apple,pomme,,en,fr\n",
    )
    glossary = load_glossary(url, "en", "de-DE")
    assert {(t.source, t.target, t.case_sensitive) for t in glossary.terms.values()} == {
        ("Apple", "Apple Inc.", True),
        ("apple", "Apfel", False),
    }


def test_tmx_picks_the_job_languages(tmp_path: Path) -> None:
    glossary = load_glossary(write(tmp_path, "g.tmx", TMX), "en", "de")
    assert {(t.source, t.target) for t in glossary.terms.values()} == {
        ("dog", "Hund"),
        ("red car", "rotes Auto"),
    }


BAD_FILES = [
    ("g.tsv", "source\ttarget\nman\t\n", r"g\.tsv:2: empty source or target term"),
    (
        "g.tsv",
        "source\ttarget\nman\tMann\nwoman\tFrau\nMan\tHerr\n",
        r"g\.tsv:4: source 'Man' has target 'Herr' here but 'Mann' on line 2",
    ),
    ("g.tsv", "src\ttgt\nman\tMann\n", r"g\.tsv:1: header must name columns source and target"),
    ("g.tsv", "source\ttarget\nman\tMann\textra\n", r"g\.tsv:2: expected 2 fields"),
    ("g.csv", "source,target,case_sensitive\nman,Mann,maybe\n", r"g\.csv:2: case_sensitive"),
    ("g.tsv", "", r"g\.tsv:1: empty glossary"),
    (
        "g.tmx",
        "<tmx><body><tu><tuv xml:lang='en'><seg>a</seg>\n</tu></body></tmx>",
        r"g\.tmx:2: invalid TMX",
    ),
    ("g.tmx", "<?xml version='1.0'?>\n<html/>", r"g\.tmx:2: not a TMX file"),
    (
        "g.tmx",
        "<tmx><body>\n<tu><tuv xml:lang='en'><seg>a</seg></tuv>"
        "<tuv xml:lang='de'><seg> </seg></tuv></tu></body></tmx>",
        r"g\.tmx:2: empty source or target term",
    ),
    ("g.xlsx", "x", r"unknown glossary format '\.xlsx'"),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD_FILES)
def test_bad_files_fail_with_file_line_and_reason(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(GlossaryError, match=message):
        load_glossary(write(tmp_path, name, text), "en", "de")


def test_missing_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(GlossaryError, match=r"nope\.tsv: glossary file not found"):
        load_glossary(str(tmp_path / "nope.tsv"), "en", "de")


def test_row_glossary_extends_and_overrides_the_job_glossary() -> None:
    job = Glossary([Term("dog", "Hund"), Term("man", "Mann")])
    row = job.with_row([{"source": "Man", "target": "Herr"}, {"source": "cat", "target": "Katze"}])
    assert {(t.source, t.target) for t in row.terms.values()} == {
        ("dog", "Hund"),
        ("Man", "Herr"),
        ("cat", "Katze"),
    }
    assert job.with_row(None) is job
    assert len(job) == 2  # the job glossary is unchanged


ROW_ERRORS = [
    ("dog", r"must be a list"),
    ([{"source": "dog"}], r"entry 1 needs string source and target"),
    ([{"source": " ", "target": "Hund"}], r"entry 1 has an empty source or target"),
    (
        [{"source": "dog", "target": "Hund"}, {"source": "DOG", "target": "Köter"}],
        r"two targets \('Hund', 'Köter'\)",
    ),
    ([["dog", "Hund"]], r"entry 1 is not a"),
]


@pytest.mark.parametrize(("value", "message"), ROW_ERRORS)
def test_bad_row_glossary_fails_the_row(value: object, message: str) -> None:
    with pytest.raises(RowGlossaryError, match=message):
        parse_row_glossary(value)


def found(glossary: Glossary, text: str, protected: list[tuple[int, int]] | None = None) -> list:
    return [(text[m.start : m.end], m.term.target) for m in glossary.match(text, protected or [])]


def test_matching_is_case_insensitive_with_word_boundaries() -> None:
    glossary = Glossary([Term("dog", "Hund"), Term("man", "Mann")])
    assert found(glossary, "The Dog bit a MAN, not a woman or hotdogs.") == [
        ("Dog", "Hund"),
        ("MAN", "Mann"),
    ]


def test_case_sensitive_terms_match_only_their_case() -> None:
    glossary = Glossary([Term("Apple", "Apple", case_sensitive=True), Term("apple", "Apfel")])
    assert found(glossary, "Apple sells an apple and an APPLE.") == [
        ("Apple", "Apple"),
        ("apple", "Apfel"),
        ("APPLE", "Apfel"),
    ]


def test_longest_leftmost_match_wins() -> None:
    glossary = Glossary(
        [Term("New York", "NY"), Term("New York City", "NYC"), Term("city hall", "Rathaus")]
    )
    assert found(glossary, "New York City hall") == [("New York City", "NYC")]
    assert found(glossary, "the city hall of New York") == [
        ("city hall", "Rathaus"),
        ("New York", "NY"),
    ]


def test_chinese_and_japanese_need_no_word_boundaries() -> None:
    glossary = Glossary([Term("人工智能", "AI"), Term("東京", "Tokyo"), Term("GPU", "GPU")])
    assert found(glossary, "我们研究人工智能和GPU。東京に行く") == [
        ("人工智能", "AI"),
        ("GPU", "GPU"),
        ("東京", "Tokyo"),
    ]


def test_nfkc_makes_full_width_and_ligatures_match_with_original_offsets() -> None:
    glossary = Glossary([Term("gpu", "GPU"), Term("file", "Datei")])
    assert found(glossary, "ａ ＧＰＵ and a ﬁle") == [("ＧＰＵ", "GPU"), ("ﬁle", "Datei")]


def test_decomposed_accents_match_composed_terms() -> None:
    glossary = Glossary([Term("café", "Café")])
    assert found(glossary, "a cafe\u0301 here") == [("cafe\u0301", "Café")]


def test_terms_inside_protected_spans_are_ignored() -> None:
    glossary = Glossary([Term("dog", "Hund")])
    text = "see http://dog.example/dog about the dog"
    url = (text.index("http"), text.index(" about"))
    matches = glossary.match(text, [url])
    assert [(m.start, m.end) for m in matches] == [(len(text) - 3, len(text))]


CHECKS = [
    ("Ein Mann und ein HUND.", [("man", "Mann"), ("dog", "Hund")], 2),
    ("Ein Herr.", [("man", "Mann")], 0),
    ("Die Ｓｔｒａßｅ", [("street", "Straße")], 1),
    ("Des Hundes Leine", [("dog", "Hund")], 1),  # inflected forms count
]


@pytest.mark.parametrize(("text", "terms", "hits"), CHECKS)
def test_check_terms(text: str, terms: list[tuple[str, str]], hits: int) -> None:
    found_terms, missed = check_terms(text, terms)
    assert len(found_terms) == hits
    assert len(missed) == len(terms) - hits


def test_check_terms_respects_case_sensitive_terms() -> None:
    hits, missed = check_terms("apple pie", [Term("Apple", "Apple", case_sensitive=True)])
    assert (hits, missed) == ([], [("Apple", "Apple")])
