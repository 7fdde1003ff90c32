"""`input.filter`: the grammar, SQL-like nulls, numbers vs text, and one-line errors."""

from __future__ import annotations

import pytest

from batchmt.pipeline.inputs.partition_filter import FilterError, parse_filter

ROWS = [
    {"date": "2026-10-31", "lang": "de", "part": "007"},
    {"date": "2026-11-01", "lang": "de", "part": "8"},
    {"date": "2026-11-02", "lang": "fr", "part": "10"},
    {"date": "2026-11-03", "lang": "it", "part": "x"},
    {"date": "2026-11-04"},  # lang and part are null
]


def kept(text: str) -> list[str]:
    test = parse_filter(text)
    return [row["date"][-2:] for row in ROWS if test.matches(row)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("date >= '2026-11-01' and lang in ('de', 'fr')", ["01", "02"]),
        ("lang = 'de'", ["31", "01"]),
        ("lang != 'de'", ["02", "03"]),  # null is not "not de": unknown, dropped
        ("lang <> 'de' or lang is null", ["02", "03", "04"]),
        ("lang not in ('de', 'fr')", ["03"]),
        ("not (lang = 'de')", ["02", "03"]),
        ("lang is not null and not lang in ('it')", ["31", "01", "02"]),
        ("part = 7", ["31"]),  # both numbers: 007 == 7
        ("part = '7'", []),  # a quoted literal compares as text
        ("part > 9", ["02", "03"]),  # 10 > 9 as numbers; 'x' > '9' as text
        ("part < 9", ["31", "01"]),
        ("(lang = 'de' or lang = 'it') and date < '2026-11-03'", ["31", "01"]),
        ("DATE > '2026-11-02' AND LANG IS NULL", []),  # column names are case-sensitive
        ("\"lang\" = 'fr' or `date` = '2026-11-04'", ["02", "04"]),
        ("lang = 'it''s'", []),
    ],
)
def test_filter_keeps_exactly(text: str, expected: list[str]) -> None:
    assert kept(text) == expected


def test_numbers_rule_is_per_value() -> None:
    # As text, '10' < '9' and '007' < '7'; as numbers (both sides numbers) they are not.
    assert kept("part >= 9") == ["02", "03"]
    assert kept("part >= '9'") == ["03"]


def test_filter_lists_its_columns() -> None:
    assert parse_filter("a = 1 and (b in ('x') or a is null)").columns == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("lang =", "end"),
        ("lang = de", "'de'"),
        ("lang in ('de'", "')'"),
        ("lang ~ 'de'", "~"),
        ("lang = 'de' date", "'date'"),
        ("lang not = 'de'", "'in'"),
        ("and = 'x'", "column"),
        ("   ", "empty"),
    ],
)
def test_bad_filters_fail_with_one_line(text: str, where: str) -> None:
    with pytest.raises(FilterError) as error:
        parse_filter(text)
    message = str(error.value)
    assert "input.filter" in message and where in message and "\n" not in message
