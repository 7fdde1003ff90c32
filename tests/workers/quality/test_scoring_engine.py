"""The engine capabilities QE relies on: the decoder's log-prob, forced decoding on the same
scale, and n-gram blocking for the fallback's search."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from batchmt.pipeline.spec import ModelSpec
from batchmt.workers.decoding.no_repeat import NoRepeatStep
from batchmt.workers.decoding.search import DecoderStep, constrained_search
from batchmt.workers.engines.base import EngineConfig, Segment
from batchmt.workers.engines.seq2seq import Seq2SeqEngine, Seq2SeqStep

SOURCES = ["the cat sat on the mat", "a dog runs", "hello world again"]


@pytest.fixture(scope="module")
def engine(tiny_marian: Path) -> Seq2SeqEngine:
    config = EngineConfig("en", "de", ModelSpec(name_or_path=str(tiny_marian)))
    return Seq2SeqEngine(config, str(tiny_marian), torch.device("cpu"))


def test_forced_decoding_of_the_output_gives_the_decoders_log_prob(
    engine: Seq2SeqEngine,
) -> None:
    segments = [Segment(s) for s in SOURCES]
    translations = engine.translate(segments)
    decoded = [t.logprob for t in translations]
    forced = engine.score(segments, [t.text for t in translations])
    assert all(lp is not None and lp < 0 for lp in decoded)
    for a, b, t in zip(decoded, forced, translations, strict=True):
        # Equal where the text re-tokenises to the ids the search chose.
        if engine.tokenizer(text_target=t.text)["input_ids"][:-1]:
            assert b is not None and a is not None
            assert b == pytest.approx(a, abs=0.35)


def test_the_translation_of_another_row_scores_lower(engine: Seq2SeqEngine) -> None:
    segments = [Segment(s) for s in SOURCES]
    own = [t.text for t in engine.translate(segments)]
    swapped = own[1:] + own[:1]
    right, wrong = engine.score(segments, own), engine.score(segments, swapped)
    assert sum(r for r in right if r is not None) > sum(w for w in wrong if w is not None)


def test_the_fallback_engine_shares_the_weights_and_asks_for_blocking(
    engine: Seq2SeqEngine,
) -> None:
    fallback = engine.fallback_engine(num_beams=6, no_repeat_ngram_size=2)
    assert fallback.model is engine.model and fallback.config.decoding.num_beams == 6
    assert fallback.no_repeat_ngram_size == 2
    assert engine.no_repeat_ngram_size == 0  # the job's own engine is unchanged
    assert len(fallback.translate([Segment(s) for s in SOURCES])) == len(SOURCES)


def _repeats(tokens: list[int]) -> int:
    bigrams = list(itertools.pairwise(tokens))
    return len(bigrams) - len(set(bigrams))


def test_blocking_removes_the_repeats_the_plain_search_makes(engine: Seq2SeqEngine) -> None:
    def search(block: bool) -> list[list[int]]:
        inputs = dict(engine.tokenizer(SOURCES, return_tensors="pt", padding=True))
        step: DecoderStep = Seq2SeqStep(engine.model, inputs, engine.blocked_ids)
        if block:
            step = NoRepeatStep(step, 2)
        found = constrained_search(
            step, [None] * len(SOURCES), num_beams=4, max_len=24, eos_id=engine.eos_id
        )
        return [r.tokens for r in found]

    # The random tiny model loops; with blocking, no bigram appears twice in any row.
    assert sum(_repeats(t) for t in search(block=False)) > 0
    assert [_repeats(t) for t in search(block=True)] == [0] * len(SOURCES)


class _Uniform:
    """A decoder step over a 5-token vocabulary that always prefers token 3."""

    def __init__(self) -> None:
        self.reordered: list[list[int]] = []

    def __call__(self, tokens: torch.Tensor | None) -> torch.Tensor:
        rows = 1 if tokens is None else tokens.shape[0]
        logp = torch.full((rows, 5), -3.0)
        logp[:, 3] = -0.1
        return logp

    def reorder(self, index: torch.Tensor) -> None:
        self.reordered.append(index.tolist())


def test_no_repeat_step_bans_the_token_completing_a_seen_ngram() -> None:
    step = NoRepeatStep(_Uniform(), 2)
    step(None)
    step.reorder(torch.tensor([0, 0]))
    first = step(torch.tensor([3, 3]))  # histories [3], [3]: nothing repeated yet
    assert torch.isfinite(first).all()
    second = step(torch.tensor([3, 1]))  # [3, 3] bans 3 after 3; [3, 1] bans nothing
    assert second[0, 3] == -torch.inf and torch.isfinite(second[1]).all()
    step.reorder(torch.tensor([1]))
    assert step.history == [[3, 1]]
