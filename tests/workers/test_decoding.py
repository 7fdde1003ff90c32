"""Our search loop: equal to HF generate without constraints, and every term placed with."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from batchmt.pipeline.text.glossary import check_terms
from batchmt.workers.decoding.constraints import Constraint, RowConstraints
from batchmt.workers.decoding.search import constrained_search
from batchmt.workers.engines.base import EngineConfig, Segment
from batchmt.workers.engines.seq2seq import Seq2SeqEngine, Seq2SeqStep
from tests.tiny_models import WORDS, corpus
from tests.workers.test_seq2seq import spec_for

CPU = torch.device("cpu")


def engine_for(model_dir: Path, num_beams: int, **decoding: object) -> Seq2SeqEngine:
    spec = spec_for(model_dir, decoding={"num_beams": num_beams, "max_new_tokens": 16, **decoding})
    return Seq2SeqEngine(EngineConfig.from_spec(spec), str(model_dir), CPU)


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("model", ["tiny_marian", "tiny_m2m100"])
def test_without_constraints_equals_hf_generate(
    model: str, num_beams: int, request: pytest.FixtureRequest
) -> None:
    engine = engine_for(request.getfixturevalue(model), num_beams)
    segments = [Segment(text) for text in corpus(12, seed=5)]
    engine.decoder = "hf"
    expected = engine.translate_batch(segments)
    engine.decoder = "ours"
    assert engine.translate_batch(segments) == expected


def test_forced_language_code_comes_first(tiny_m2m100: Path) -> None:
    engine = engine_for(tiny_m2m100, 2)
    assert engine.forced_prefix == [engine.tokenizer.get_lang_id("de")]
    inputs = engine.tokenizer(["a dog."], return_tensors="pt")
    step = Seq2SeqStep(engine.model, dict(inputs), engine.blocked_ids)
    (result,) = constrained_search(
        step,
        [None],
        num_beams=2,
        max_len=8,
        eos_id=engine.eos_id,
        forced_prefix=engine.forced_prefix,
    )
    assert result.tokens[0] == engine.forced_prefix[0]


def random_rows(n: int, seed: int) -> list[Segment]:
    """Random source texts, each with one to three random target terms (random weights
    never choose these words on their own, so every term is a real constraint)."""
    rng = random.Random(seed)
    words = [w for w in WORDS if w.isascii()]
    rows = []
    for text in corpus(n, seed=seed):
        targets = rng.sample(words, rng.randint(1, 3))
        rows.append(Segment(text, terms=tuple((t, t) for t in targets)))
    return rows


@pytest.mark.parametrize("num_beams", [1, 4])
def test_every_term_appears_in_every_row(tiny_marian: Path, num_beams: int) -> None:
    engine = engine_for(tiny_marian, num_beams, max_new_tokens=40)
    rows = random_rows(40, seed=num_beams)
    out = engine.translate(rows)
    for segment, translation in zip(rows, out, strict=True):
        _, missed = check_terms(translation.text, segment.terms)
        assert missed == [] and translation.unmet_terms == [], (segment, translation)


def test_rows_with_and_without_terms_share_a_batch(tiny_marian: Path) -> None:
    engine = engine_for(tiny_marian, 2)
    plain = [Segment(t) for t in corpus(4, seed=9)]
    alone = engine.translate_batch(plain)
    mixed = engine.translate_batch([*plain, Segment("a dog.", terms=(("dog", "hund"),))])
    assert mixed[:4] == alone
    assert "hund" in mixed[4]


def test_too_short_a_limit_reports_the_row_unmet(tiny_marian: Path) -> None:
    engine = engine_for(tiny_marian, 3)
    inputs = engine.tokenizer(["a dog.", "a cat."], return_tensors="pt")
    step = Seq2SeqStep(engine.model, dict(inputs), engine.blocked_ids)
    long_term = Constraint(((10, 11, 12, 13),), "four tokens")
    results = constrained_search(
        step,
        [RowConstraints([long_term]), RowConstraints([Constraint(((10,),), "one")])],
        num_beams=3,
        max_len=3,
        eos_id=engine.eos_id,
    )
    assert not results[0].met and results[0].unmet == ["four tokens"]
    assert results[0].tokens  # the best hypothesis still comes back
    assert results[1].met and 10 in results[1].tokens
