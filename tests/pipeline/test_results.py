"""Shard results are completion markers: their JSON is a format older outputs resume from."""

from __future__ import annotations

import json

import pytest

from batchmt.pipeline.results import GlossaryAdherence, ShardResult

# A marker exactly as a job writes it today (storage.write_json: sorted keys, indent 1).
MARKER = {
    "attempt": 2,
    "device": "cuda:0",
    "format_status_counts": {"anchored": 3, "plain": 7},
    "glossary": {"adherence": 0.75, "honoured": 3, "terms": 4},
    "num_rows": 10,
    "pid": 4242,
    "seconds": 1.234,
    "shard_id": "00003",
    "source_tokens": 321,
    "status_counts": {"failed": 1, "ok": 9},
}


def dumps(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, indent=1)


def test_marker_round_trips_byte_for_byte():
    result = ShardResult.from_dict(MARKER)
    assert result.glossary == GlossaryAdherence(terms=4, honoured=3)
    assert dumps(result.to_dict()) == dumps(MARKER)


def test_no_glossary_key_without_a_glossary():
    marker = {k: v for k, v in MARKER.items() if k != "glossary"}
    result = ShardResult.from_dict(marker)
    assert result.glossary is None
    assert result.to_dict() == marker


@pytest.mark.parametrize(("terms", "honoured", "adherence"), [(4, 3, 0.75), (0, 0, None)])
def test_adherence(terms: int, honoured: int, adherence: float | None):
    assert GlossaryAdherence(terms, honoured).to_dict()["adherence"] == adherence


def test_an_older_marker_reads_with_defaults():
    result = ShardResult.from_dict({"shard_id": "00001", "num_rows": 4, "status_counts": {"ok": 4}})
    assert result == ShardResult("00001", 4, {"ok": 4})
    assert (result.source_tokens, result.seconds, result.glossary) == (0, 0.0, None)
