"""A job with a glossary file, a per-row glossary column and HTML rows, end to end on a
tiny random-weight model: the model knows nothing, so whatever comes out, every matched
term must be in it and every tag must survive byte for byte."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from batchmt.jobs.cli import main
from batchmt.pipeline.status import EMPTY, GLOSSARY_MISSED, INVALID, TRANSLATED
from tests.jobs.corpora import local_job_config

pytestmark = pytest.mark.usefixtures("ray_local")

ENTRY = pa.struct([("source", pa.string()), ("target", pa.string())])
TAG = re.compile(r"<[^>]+>")


def corpus() -> pa.Table:
    texts = [
        "a dog is walking near the people.",
        "two dogs play with a ball.",
        "a man and a woman sit on the street.",
        "the child is playing in the water.",
        '<p>a <b>dog</b> runs in the <a href="https://example.com/p?id=1&amp;x=2">park</a>.</p>',
        '<li class="item">a cat <i>sits</i> on a red ball.</li>',
        "a woman is walking.",
        "",
    ]
    row_terms = [
        None,
        [{"source": "ball", "target": "wasser"}],
        [{"source": "man", "target": "leute"}],
        None,
        None,
        [{"source": "cat", "target": "katze"}],
        [{"source": "woman", "target": ""}],  # malformed: fails only this row
        None,
    ]
    return pa.table(
        {
            "id": [f"g{i}" for i in range(len(texts))],
            "text": texts,
            "glossary": pa.array(row_terms, pa.list_(ENTRY)),
        }
    )


def test_glossary_file_row_glossaries_and_html(tiny_marian: Path, tmp_path: Path) -> None:
    pq.write_table(corpus(), tmp_path / "in.parquet")
    # Targets the tiny vocabulary can write (lower-case words it was built from), plus one
    # it cannot ("Vierbeiner": no upper-case pieces), which must come back flagged.
    (tmp_path / "terms.tsv").write_text(
        "source\ttarget\ndog\thund\nchild\tkind\npeople\tVierbeiner\n"
    )
    config = local_job_config(
        tmp_path,
        tiny_marian,
        glossary={"path": str(tmp_path / "terms.tsv")},
        decoding={"num_beams": 2, "max_new_tokens": 48, "max_length_a": 3.0},
        workers={"num_workers": 1},
        sharding={"rows_per_shard": 4},
        quality={"sample_per_shard": 2},
    )
    assert main(["run", str(config), "--no-progress"]) == 0
    rows = {
        r["id"]: r
        for r in ds.dataset(tmp_path / "out" / "data", format="parquet").to_table().to_pylist()
    }
    assert len(rows) == 8

    expected_terms = {
        "g1": ["wasser"],  # "dogs" is not the term "dog": matching respects word ends
        "g2": ["leute"],
        "g3": ["kind"],
        "g4": ["hund"],
        "g5": ["katze"],
    }
    for row_id, terms in expected_terms.items():
        row = rows[row_id]
        assert row["status"] in TRANSLATED, row
        for term in terms:
            assert term.casefold() in row["translation"].casefold(), (term, row["translation"])
        assert sorted(row["glossary_hits"]) == sorted(terms)
        assert row["glossary_missed"] == []

    unwritable = rows["g0"]
    assert unwritable["status"] == GLOSSARY_MISSED and "Vierbeiner" in unwritable["error"]
    assert unwritable["glossary_hits"] == ["hund"]
    assert unwritable["glossary_missed"] == ["Vierbeiner"]
    assert rows["g6"]["status"] == INVALID and "empty" in rows["g6"]["error"]
    assert rows["g7"]["status"] == EMPTY

    for row_id in ("g4", "g5"):  # every tag byte-identical, in source order
        row = rows[row_id]
        assert TAG.findall(row["translation"]) == TAG.findall(row["text"])
        assert row["format_status"] in ("ok", "repaired", "fallback")
    assert rows["g0"]["format_status"] is None  # plain prose is not anchored

    quality = json.loads((tmp_path / "out" / "quality" / "00000.json").read_text())
    assert quality["glossary"] == {"terms": 5, "honoured": 4, "adherence": 0.8}


def test_bad_glossary_file_fails_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pq.write_table(corpus(), tmp_path / "in.parquet")
    (tmp_path / "terms.tsv").write_text("source\ttarget\ndog\tHund\ndog\tVierbeiner\n")
    config = local_job_config(tmp_path, "unused", glossary={"path": str(tmp_path / "terms.tsv")})
    assert main(["run", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "terms.tsv" in err and "3" in err and "dog" in err
    assert not (tmp_path / "out").exists()


def test_row_glossaries_alone_load_the_constrained_decoder_at_replica_start(
    tiny_marian: Path, tmp_path: Path
) -> None:
    """No glossary file, only the per-row column, on CTranslate2: the frozen plan tells the
    replicas that rows carry terms, so the constrained decoder is there from the start and
    every term the vocabulary can write is placed (the random model writes none of them
    free: without the decoder they would come back in glossary_missed)."""
    table = corpus().slice(1, 5)  # g1..g5: row terms on g1, g2 and g5, none malformed
    pq.write_table(table, tmp_path / "in.parquet")
    config = local_job_config(
        tmp_path,
        tiny_marian,
        model={"name_or_path": str(tiny_marian), "backend": "ctranslate2"},
        decoding={"num_beams": 2, "max_new_tokens": 48, "max_length_a": 3.0},
        workers={"num_workers": 1},
        quality={"sample_per_shard": 1, "fallback": {"enabled": False}},
    )
    assert main(["run", str(config), "--no-progress"]) == 0
    rows = {
        r["id"]: r
        for r in ds.dataset(tmp_path / "out" / "data", format="parquet").to_table().to_pylist()
    }
    for row_id, term in (("g1", "wasser"), ("g2", "leute"), ("g5", "katze")):
        assert rows[row_id]["glossary_hits"] == [term] and rows[row_id]["glossary_missed"] == []
        assert term in rows[row_id]["translation"].casefold()
