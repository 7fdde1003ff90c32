"""The translation memory in the worker: what a key covers (model content, decoding,
languages, formats, QE settings, the terms that can reach a row, context when the model
sees it), and replicas of the tiny real Marian model serving a rerun from memory, byte for
byte, while a changed glossary term misses only the rows it reaches."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchmt.jobs.prepare import make_plan
from batchmt.pipeline.columns import FROM_MEMORY
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.spec import JobSpec, spec_from_dict
from batchmt.pipeline.status import TRANSLATED
from batchmt.pipeline.text.glossary import Glossary, Term
from batchmt.workers.actor import TranslatorActor
from batchmt.workers.reuse.keys import RowKeys, model_identity
from batchmt.workers.translate import RowInput
from tests.tiny_models import corpus

SEQ2SEQ = {"model": "m", "family": "seq2seq", "backend": "ctranslate2", "dtype": "int8"}
CAUSAL = {"model": "m", "family": "causal", "dtype": "bfloat16"}


def job_spec(tmp_path: Path, model_path: Path | str, **sections: Any) -> JobSpec:
    data: dict[str, Any] = {
        "job_name": "memory-test",
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": str(tmp_path / "in.parquet")},
        "output": {"path": str(tmp_path / "out")},
        "model": {"name_or_path": str(model_path), "max_input_tokens": 40},
        "decoding": {"num_beams": 2, "max_new_tokens": 16},
        "sharding": {"rows_per_shard": 12},
        # Random weights: the fallback would re-translate nearly every row; QE still runs.
        "quality": {"sample_per_shard": 2, "fallback": {"enabled": False}},
        "cache": {"path": str(tmp_path / "tm")},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return spec_from_dict(data)


def keys_of(spec: JobSpec, model: Path, rows: list[RowInput], signature: Any = None) -> list:
    signature = signature or SEQ2SEQ
    keys = RowKeys(spec, model_identity(spec, str(model), signature), signature)
    return [keys.key(row) for row in rows]


# -- keys --------------------------------------------------------------------------------------


def test_model_identity_is_its_content_not_its_path(tiny_marian: Path, tmp_path: Path) -> None:
    spec = job_spec(tmp_path, tiny_marian)
    rows = [RowInput("a dog runs.")]
    copy = tmp_path / "elsewhere"
    shutil.copytree(tiny_marian, copy)
    assert keys_of(spec, copy, rows) == keys_of(spec, tiny_marian, rows)
    (copy / "generation_config.json").write_text('{"num_beams": 7}')
    assert keys_of(spec, copy, rows) != keys_of(spec, tiny_marian, rows)
    # How the model runs is part of it: another compute type, another backend.
    int8 = keys_of(spec, tiny_marian, rows)
    assert keys_of(spec, tiny_marian, rows, {**SEQ2SEQ, "dtype": "float32"}) != int8
    transformers = {k: v for k, v in SEQ2SEQ.items() if k != "backend"}
    assert keys_of(spec, tiny_marian, rows, transformers) != int8


@pytest.mark.parametrize(
    ("section", "change", "misses"),
    [
        ("decoding", {"num_beams": 4}, True),
        ("decoding", {"max_length_a": 2.0}, True),
        ("decoding", {"max_batch_tokens": 999, "max_batch_size": 3}, False),
        ("formats", {"ignore_tags": ["sku"]}, True),
        ("quality", {"thresholds": {"min_output_logprob": -1.0}}, True),
        ("quality", {"fallback": {"enabled": True}}, True),
        ("quality", {"sample_per_shard": 9}, False),
        ("model", {"quantization": "int8"}, True),
        ("cache", {"mode": "read_only"}, False),
        ("workers", {"num_workers": 3}, False),
    ],
)
def test_settings_that_shape_a_row_change_its_key(
    tiny_marian: Path, tmp_path: Path, section: str, change: dict[str, Any], misses: bool
) -> None:
    rows = [RowInput("a dog runs."), RowInput("a <b>cat</b> sits.")]
    before = keys_of(job_spec(tmp_path, tiny_marian), tiny_marian, rows)
    after = keys_of(job_spec(tmp_path, tiny_marian, **{section: change}), tiny_marian, rows)
    assert [a != b for a, b in zip(before, after, strict=True)] == [misses, misses]


def test_target_language_changes_the_key(tiny_marian: Path, tmp_path: Path) -> None:
    rows = [RowInput("a dog runs.")]
    spec = job_spec(tmp_path, tiny_marian)
    other = spec.model_copy(update={"target_lang": "fr"})
    assert keys_of(spec, tiny_marian, rows) != keys_of(other, tiny_marian, rows)


def test_a_changed_term_changes_only_the_keys_of_rows_it_can_reach(
    tiny_marian: Path, tmp_path: Path
) -> None:
    spec = job_spec(tmp_path, tiny_marian)
    old = Glossary([Term("dog", "Hund"), Term("big dog", "Riesenhund"), Term("cat", "Katze")])
    new = Glossary([Term("dog", "Vierbeiner"), Term("big dog", "Dogge"), Term("cat", "Katze")])
    texts = ["a dog runs.", "a cat sits.", "a man walks.", "a <b>big</b> dog runs.", "a hotdog."]

    def keys(glossary: Glossary) -> list[str | None]:
        return keys_of(spec, tiny_marian, [RowInput(t, (), glossary) for t in texts])

    changed = [a != b for a, b in zip(keys(old), keys(new), strict=True)]
    # The markup row reads "a big dog runs." once its tags are cut out: "big dog" reaches
    # it. "hotdog" holds "dog" (a superset: a word-boundary miss is keyed all the same).
    assert changed == [True, False, False, True, True]
    # A row without any matching term keys as with no glossary at all.
    assert keys(Glossary())[2] == keys(old)[2]


def test_context_is_keyed_only_where_the_model_sees_it(tiny_marian: Path, tmp_path: Path) -> None:
    spec = job_spec(tmp_path, tiny_marian, context={"window": 2})
    rows = [RowInput("a dog runs.", ["one."]), RowInput("a dog runs.", ["two."])]
    seq2seq = keys_of(spec, tiny_marian, rows)
    assert seq2seq[0] == seq2seq[1]  # seq2seq models see no context unless asked
    causal = keys_of(spec, tiny_marian, rows, CAUSAL)
    assert causal[0] != causal[1]
    asked = job_spec(tmp_path, tiny_marian, context={"window": 2, "seq2seq_use_context": True})
    both = keys_of(asked, tiny_marian, rows)
    assert both[0] != both[1]


def test_rows_the_memory_leaves_alone_have_no_key(tiny_marian: Path, tmp_path: Path) -> None:
    spec = job_spec(tmp_path, tiny_marian)
    rows = [RowInput(None), RowInput(" \u200b\n"), RowInput("a dog.", (), None, "bad glossary")]
    assert keys_of(spec, tiny_marian, rows) == [None, None, None]


# -- replicas ----------------------------------------------------------------------------------


def corpus_with_repeats() -> pa.Table:
    """36 rows in 3 shards: 20 distinct sentences, repeats within and across shards, an
    empty row and a null one."""
    distinct = corpus(20, seed=3)
    texts: list[str | None] = [distinct[i % 20] if i % 3 else distinct[i % 7] for i in range(36)]
    texts[5], texts[30] = "", None
    return pa.table({"id": [f"r{i:03d}" for i in range(36)], "text": texts})


def run_replica(spec: JobSpec, base: Path) -> tuple[pa.Table, list[ShardResult]]:
    replica = TranslatorActor(spec.model_dump_json(), str(base), 1)
    results = [replica.process_shard(s, 1) for s in make_plan(spec).shards]
    out = Path(spec.output.path) / "data"
    table = pa.concat_tables(pq.read_table(p) for p in sorted(out.glob("part-*.parquet")))
    return table, results


def total(results: list[ShardResult], name: str) -> int:
    return sum(getattr(r.memory, name) for r in results if r.memory is not None)


def test_a_rerun_is_served_from_memory_byte_for_byte(tiny_marian: Path, tmp_path: Path) -> None:
    table = corpus_with_repeats()
    pq.write_table(table, tmp_path / "in.parquet")
    first, first_results = run_replica(job_spec(tmp_path, tiny_marian), tmp_path)
    statuses = first["status"].to_pylist()
    translated = [
        t for t, s in zip(first["text"].to_pylist(), statuses, strict=True) if s in TRANSLATED
    ]
    assert len(translated) == 34 and len(set(translated)) < 25
    # Each distinct sentence decoded once in the job: repeats within a shard copy it,
    # repeats in later shards come from the replica's memory.
    repeats = len(translated) - len(set(translated))
    assert total(first_results, "stored") == len(set(translated))
    assert total(first_results, "from_memory") == total(first_results, "deduplicated") == repeats
    assert sum(first.column(FROM_MEMORY).to_pylist()) == repeats

    # A fresh replica (another job's): everything from memory, nothing decoded.
    again = job_spec(tmp_path, tiny_marian, output={"path": str(tmp_path / "out2")})
    second, second_results = run_replica(again, tmp_path)
    assert sum(r.source_tokens for r in second_results) == 0
    assert total(second_results, "from_memory") == len(translated)
    assert total(second_results, "deduplicated") == 0 and total(second_results, "stored") == 0
    assert second.drop_columns([FROM_MEMORY]).equals(first.drop_columns([FROM_MEMORY]))
    assert second[FROM_MEMORY].to_pylist() == [
        s in TRANSLATED for s in second["status"].to_pylist()
    ]
    assert [r.qe for r in second_results] == [r.qe for r in first_results]

    # Memory off: every row decoded, the same output (repeats decoded once changed nothing).
    off = job_spec(
        tmp_path, tiny_marian, output={"path": str(tmp_path / "out3")}, cache={"mode": "off"}
    )
    third, third_results = run_replica(off, tmp_path)
    assert not any(third[FROM_MEMORY].to_pylist())
    assert all(r.memory is None for r in third_results)
    assert third.drop_columns([FROM_MEMORY]).equals(first.drop_columns([FROM_MEMORY]))


def test_a_changed_glossary_term_misses_only_its_rows(tiny_marian: Path, tmp_path: Path) -> None:
    texts = ["a dog runs.", "a cat sits in the park.", "two people walking.", "the dog is red."]
    pq.write_table(pa.table({"id": list(range(4)), "text": texts}), tmp_path / "in.parquet")
    terms = tmp_path / "terms.tsv"
    terms.write_text("source\ttarget\ndog\tHund\ncat\tKatze\n")
    spec = job_spec(tmp_path, tiny_marian, glossary={"path": str(terms)})
    run_replica(spec, tmp_path)
    terms.write_text("source\ttarget\ndog\tVierbeiner\ncat\tKatze\n")
    again = job_spec(
        tmp_path, tiny_marian, glossary={"path": str(terms)}, output={"path": str(tmp_path / "o2")}
    )
    second, _ = run_replica(again, tmp_path)
    assert second[FROM_MEMORY].to_pylist() == [False, True, True, False]


def test_read_only_serves_and_never_writes_off_ignores_the_memory(
    tiny_marian: Path, tmp_path: Path
) -> None:
    texts = ["a dog runs.", "a cat sits.", "a dog runs."]
    pq.write_table(pa.table({"id": list(range(3)), "text": texts}), tmp_path / "in.parquet")
    read_only = job_spec(tmp_path, tiny_marian, cache={"mode": "read_only"})
    table, results = run_replica(read_only, tmp_path)
    assert not (tmp_path / "tm").exists()  # nothing written, not even the folder
    assert table[FROM_MEMORY].to_pylist() == [False, False, True]  # the repeat: copied
    assert total(results, "stored") == 0

    run_replica(job_spec(tmp_path, tiny_marian, output={"path": str(tmp_path / "o2")}), tmp_path)
    files = sorted((tmp_path / "tm").iterdir())
    assert len(files) == 1
    served, _ = run_replica(
        job_spec(
            tmp_path,
            tiny_marian,
            output={"path": str(tmp_path / "o3")},
            cache={"mode": "read_only"},
        ),
        tmp_path,
    )
    assert served[FROM_MEMORY].to_pylist() == [True, True, True]
    off = job_spec(
        tmp_path, tiny_marian, output={"path": str(tmp_path / "o4")}, cache={"mode": "off"}
    )
    not_served, _ = run_replica(off, tmp_path)
    assert not_served[FROM_MEMORY].to_pylist() == [False, False, False]
    assert sorted((tmp_path / "tm").iterdir()) == files


def test_a_memory_that_cannot_be_written_costs_reuse_not_the_shard(
    tiny_marian: Path, tmp_path: Path
) -> None:
    pq.write_table(
        pa.table({"id": [1, 2], "text": ["a dog runs.", "a cat sits."]}), tmp_path / "in.parquet"
    )
    (tmp_path / "tm").write_text("a file where the memory's folder should be")
    table, results = run_replica(job_spec(tmp_path, tiny_marian), tmp_path)
    assert all(s in TRANSLATED for s in table["status"].to_pylist())
    assert total(results, "stored") == 0 and total(results, "from_memory") == 0
