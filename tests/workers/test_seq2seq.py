"""The seq2seq engine on tiny real models: Marian and M2M100 (language codes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from batchmt.pipeline.spec import JobSpec, spec_from_dict
from batchmt.pipeline.status import OK, OK_SPLIT
from batchmt.workers.engines.base import EngineConfig, EngineLoadError, Segment
from batchmt.workers.engines.checkpoints import resolve_model_path
from batchmt.workers.engines.loading import load_engine
from batchmt.workers.engines.seq2seq import Seq2SeqEngine
from batchmt.workers.translate import translate_texts
from tests.conftest import StorageRoot

CPU = torch.device("cpu")


def spec_for(model_dir: Path | str, src: str = "en", tgt: str = "de", **sections: dict) -> JobSpec:
    data: dict = {
        "source_lang": src,
        "target_lang": tgt,
        "input": {"path": "unused"},
        "output": {"path": "unused"},
        # These tests are about the transformers engine; CTranslate2 has its own file.
        "model": {"name_or_path": str(model_dir), "backend": "transformers"},
        "decoding": {"num_beams": 2, "max_new_tokens": 12},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return spec_from_dict(data)


def test_marian_translates_batches_in_order(tiny_marian: Path) -> None:
    engine = load_engine(EngineConfig.from_spec(spec_for(tiny_marian)), str(tiny_marian), CPU)
    assert isinstance(engine, Seq2SeqEngine)
    assert engine.max_input_tokens == 62  # 64 positions - special-token margin
    texts = ["a man is walking.", "two dogs play in the park with a red ball.", "a cat."]
    one_by_one = [engine.translate_batch([Segment(t)])[0] for t in texts]
    assert engine.translate_batch([Segment(t) for t in texts]) == one_by_one
    assert all(isinstance(t, str) for t in one_by_one)


def test_output_length_is_bounded_by_input_length(tiny_marian: Path) -> None:
    spec = spec_for(
        tiny_marian, decoding={"max_new_tokens": 200, "max_length_a": 1.0, "max_length_b": 2}
    )
    engine = load_engine(EngineConfig.from_spec(spec), str(tiny_marian), CPU)
    out = engine.translate_batch([Segment("a dog.")])[0]
    assert len(engine.tokenizer(out)["input_ids"]) <= engine.count_tokens(["a dog."])[0] + 3


def test_long_rows_are_split_not_truncated(tiny_marian: Path) -> None:
    spec = spec_for(tiny_marian, model={"max_input_tokens": 12})
    engine = load_engine(EngineConfig.from_spec(spec), str(tiny_marian), CPU)
    long_text = " ".join(["a man is walking in the park."] * 8)
    results, stats = translate_texts(
        engine,
        [long_text, "a cat."],
        [[], []],
        target_lang="de",
        max_batch_tokens=256,
        max_batch_size=8,
    )
    assert [r.status for r in results] == [OK_SPLIT, OK]
    assert stats.batches >= 1


def test_m2m100_sets_source_code_and_forces_target_language(tiny_m2m100: Path) -> None:
    engine = load_engine(
        EngineConfig.from_spec(spec_for(tiny_m2m100, "en", "fr")), str(tiny_m2m100), CPU
    )
    assert isinstance(engine, Seq2SeqEngine)
    tok = engine.tokenizer
    assert engine.generate_kwargs["forced_bos_token_id"] == tok.get_lang_id("fr")
    ids = tok("a man.")["input_ids"]
    assert ids[0] == tok.get_lang_id("en")  # source language code leads the input
    out = engine.model.generate(
        **tok(["a man."], return_tensors="pt"), max_new_tokens=4, **engine.generate_kwargs
    )
    assert int(out[0, 1]) == tok.get_lang_id("fr")
    assert len(engine.translate_batch([Segment("a man."), Segment("two dogs.")])) == 2


def test_unknown_target_language_is_a_load_error(tiny_m2m100: Path) -> None:
    # A valid BCP 47 tag (the spec refuses others) that the model has no code for.
    with pytest.raises(EngineLoadError, match="target language 'haw'"):
        load_engine(
            EngineConfig.from_spec(spec_for(tiny_m2m100, "en", "haw")), str(tiny_m2m100), CPU
        )


def test_context_for_seq2seq_needs_a_separator_token(tiny_marian: Path) -> None:
    spec = spec_for(tiny_marian, context={"window": 2, "seq2seq_use_context": True})
    with pytest.raises(EngineLoadError, match="separator token"):
        load_engine(EngineConfig.from_spec(spec), str(tiny_marian), CPU)


def test_missing_local_model_folder() -> None:
    with pytest.raises(FileNotFoundError, match=r"model folder '\./models/nope' not found"):
        resolve_model_path("./models/nope")
    assert resolve_model_path("Helsinki-NLP/opus-mt-en-de") == "Helsinki-NLP/opus-mt-en-de"


def test_model_from_object_storage_is_cached_locally(
    tiny_marian: Path, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = StorageRoot(
        "s3", f"s3://batchmt-test/models-{tmp_path.name}", {"endpoint_url": s3_endpoint}
    )
    for file in tiny_marian.iterdir():
        root.write_bytes(f"tiny/{file.name}", file.read_bytes())
    monkeypatch.setenv("BATCHMT_CACHE", str(tmp_path / "cache"))
    local = resolve_model_path(root.url_of("tiny"), root.storage_options)
    assert Path(local, "config.json").exists() and Path(local, ".complete").exists()
    assert resolve_model_path(root.url_of("tiny"), root.storage_options) == local
    engine = load_engine(EngineConfig.from_spec(spec_for(root.url_of("tiny"))), local, CPU)
    assert engine.translate_batch([Segment("a dog.")])
