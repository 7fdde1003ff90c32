from __future__ import annotations

import random

import pyarrow as pa

from batchmt.pipeline.text.context import context_windows


def test_windows_from_documents_in_shuffled_order():
    rows = [
        ("a", 0, "A0"),
        ("a", 1, "A1"),
        ("a", 2, "  "),
        ("a", 3, "A3"),
        ("a", 4, "A4"),
        ("b", 0, "B0"),
        ("b", 1, None),
        ("b", 2, "B2"),
    ]
    expected = {
        ("a", 0): [],
        ("a", 1): ["A0"],
        ("a", 2): ["A0", "A1"],
        ("a", 3): ["A0", "A1"],
        ("a", 4): ["A1", "A3"],
        ("b", 0): [],
        ("b", 1): ["B0"],
        ("b", 2): ["B0"],
    }
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    table = pa.table(
        {
            "doc_id": [r[0] for r in shuffled],
            "seg_idx": [r[1] for r in shuffled],
            "text": [r[2] for r in shuffled],
        }
    )
    windows = context_windows(table, "text", window=2)
    assert windows == [expected[(r[0], r[1])] for r in shuffled]


def test_rows_without_document_get_no_context():
    table = pa.table({"doc_id": ["a", None, "a"], "seg_idx": [0, 1, None], "text": ["x", "y", "z"]})
    assert context_windows(table, "text", window=3) == [[], [], []]


def test_window_zero_or_no_document_columns():
    table = pa.table({"doc_id": ["a", "a"], "seg_idx": [0, 1], "text": ["x", "y"]})
    assert context_windows(table, "text", window=0) == [[], []]
    assert context_windows(pa.table({"text": ["x"]}), "text", window=2) == [[]]


def test_explicit_context_column_wins():
    table = pa.table(
        {
            "doc_id": ["a", "a", "a"],
            "seg_idx": [0, 1, 2],
            "text": ["x", "y", "z"],
            "context": pa.array([["given"], None, ["p", None]], pa.list_(pa.string())),
        }
    )
    assert context_windows(table, "text", window=2) == [["given"], [], ["p"]]
