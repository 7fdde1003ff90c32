"""The engine interface: everything the shard loop may ask of a model family, declared once.

The shard loop (`workers/translate.py`) and the actor talk to engines only through
`TranslationEngine`; no caller probes for features with `getattr` or `isinstance`. Two
methods are required (token counting and translation); the rest are capabilities with
defaults that an engine overrides when it has them:

| capability            | default                      | who overrides             |
|-----------------------|------------------------------|---------------------------|
| `batch_costs`         | source tokens                | causal (KV-cache tokens)  |
| `aligner`             | None (markup re-placed by    | seq2seq (cross-attention) |
|                       | order, or the run fallback)  |                           |
| `kv_token_budget`     | None (the job's budget)      | causal (memory fit check) |
| `translates_marked`   | False                        | causal (HY-MT `<sn>` tags)|
| `score`               | None per row (no forced      | seq2seq (teacher forcing) |
|                       | decoding)                    |                           |
| `fallback_engine`     | None (no second decode)      | seq2seq (wider beam, no   |
|                       |                              | repeated n-grams)         |
| `schedules_batches`   | False (token-budget batches) | vllm (its own scheduler)  |
| `translate_or_defer`  | `translate` (defers nothing) | CTranslate2 (rows missing |
|                       |                              | a term wait for `constrain`)|
| `place_deferred`      | the drafts as they are       | CTranslate2 (terms placed |
|                       |                              | in the shard's free drafts)|

`constrain` is the same for every engine: the deferred rows go to the engine's declared
`constrained` collaborator (the model that places every term), which the loader builds at
replica start when the job has terms (`workers/engines/loading.py`), and counts in the
replica's memory check; an engine without one translates them itself.

Engines receive an `EngineConfig`: the languages, model, decoding and context settings, not
the whole job spec.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchmt.pipeline.errors import UserError
from batchmt.pipeline.spec import ContextSpec, DecodingSpec, JobSpec, ModelSpec


@dataclass(frozen=True)
class Alignment:
    """Word links (indices into `text.split()`): `best_source[t]` is the source word that
    target word t attends to most, `best_target[s]` the reverse."""

    best_source: tuple[int, ...]
    best_target: tuple[int, ...]

    @property
    def source_words(self) -> int:
        return len(self.best_target)

    @property
    def target_words(self) -> int:
        return len(self.best_source)

    @property
    def links(self) -> set[tuple[int, int]]:
        """Both directions together: every word has at least one link."""
        forward = {(s, t) for t, s in enumerate(self.best_source)}
        return forward | {(s, t) for s, t in enumerate(self.best_target)}

    def targets_of(self, source_word: int) -> list[int]:
        """Target words that chose this source word; else the one it chose. Using one
        direction first keeps a tag around "dog" from stretching over half the sentence."""
        chosen = [t for t, s in enumerate(self.best_source) if s == source_word]
        if chosen:
            return chosen
        if 0 <= source_word < len(self.best_target):
            return [self.best_target[source_word]]
        return []


#: (sources, translations) -> one word alignment per pair (engines that can align offer one).
Aligner = Callable[[list[str], list[str]], list[Alignment]]


@dataclass(frozen=True)
class Segment:
    """One unit the model translates: a row's text (or a piece of it) and its context."""

    text: str
    context: tuple[str, ...] = field(default_factory=tuple)
    # (source term, target term) pairs matched in `text`: every target term must appear in
    # the translation. Verbatim spans (placeholders, URLs, numbers) come as (span, span).
    terms: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@dataclass
class Translation:
    text: str
    # Target terms of the segment that the decoder could not place (length limit, or a
    # term the vocabulary cannot write); empty when every term is in `text`.
    unmet_terms: list[str] = field(default_factory=list)
    # Mean log-probability per generated token (EOS included) of the chosen hypothesis, as
    # the decoder scored it; None when the engine's decoder does not report it. Row-level
    # quality estimation reads it (pipeline/quality/qe.py), so it costs no extra model call.
    logprob: float | None = None
    # Only from `translate_or_defer`: the engine's fast path missed a glossary term and the
    # row waits for `constrain`; `text` holds the free translation meanwhile.
    deferred: bool = False
    # A glossary term could only be written as a fragment (a sentence of its own, after a
    # cut copy of itself: `pipeline/text/term_checks.py`); QE adds `term_placement`.
    term_placement: bool = False


@dataclass(frozen=True)
class EngineConfig:
    """What an engine needs to know: languages, model, decoding, context, and whether rows
    may carry glossary terms (the loader then builds the engine's constrained decoder).
    Small and picklable; built from the job spec by `from_spec`."""

    source_lang: str
    target_lang: str
    model: ModelSpec
    decoding: DecodingSpec = field(default_factory=DecodingSpec)
    context: ContextSpec = field(default_factory=ContextSpec)
    # The job has glossary terms: a job glossary, or rows that carry their own (the actor
    # sets it from the frozen plan's columns).
    terms: bool = False

    @classmethod
    def from_spec(cls, spec: JobSpec, *, row_glossaries: bool = False) -> EngineConfig:
        terms = spec.glossary.path is not None or row_glossaries
        return cls(
            spec.source_lang, spec.target_lang, spec.model, spec.decoding, spec.context, terms
        )

    @property
    def model_name(self) -> str:
        """The model as the user named it (for messages and signatures)."""
        return self.model.name_or_path

    def output_bound(self, source_tokens: int) -> int:
        """Most tokens a segment of `source_tokens` may produce: a * n + b, under the hard cap.

        One degenerate row must not hold its batch for max_new_tokens steps while the others
        finished long ago.
        """
        d = self.decoding
        return max(1, min(d.max_new_tokens, int(d.max_length_a * source_tokens + d.max_length_b)))


class EngineLoadError(UserError, RuntimeError):
    """The model could not be loaded; the message says which model and what to check."""


class TranslationEngine(ABC):
    """A loaded model replica that translates batches of segments."""

    #: Longest source, in model tokens, the engine accepts without truncating.
    max_input_tokens: int
    #: Describes the replica for logs and quality signatures (model, family, dtype, device).
    signature: dict[str, str]

    # -- required ----------------------------------------------------------------------------

    #: The engine that decodes rows `translate_or_defer` deferred, with every term placed
    #: (CTranslate2: the transformers model of the same checkpoint); None: this engine.
    constrained: TranslationEngine | None = None

    @abstractmethod
    def count_tokens(self, texts: list[str]) -> list[int]:
        """Source-token counts, as the model would see each text (no truncation)."""

    @abstractmethod
    def translate(self, segments: list[Segment], *, marked: bool = False) -> list[Translation]:
        """Translate one batch that fits the token budget; raises on model failure.

        `marked=True`: the segments' text carries `<sn>` spans around markup (only asked of
        engines whose `translates_marked` is True); the answer keeps the tags.
        """

    # -- capabilities with defaults ------------------------------------------------------------

    def resolve_deferred(
        self, segments: list[Segment], out: list[Translation]
    ) -> list[Translation]:
        """`out` (from `translate_or_defer`) with every deferred row settled by
        `place_deferred` or decoded by `constrain`: what `translate` is for an engine that
        defers."""
        redo = [i for i, t in enumerate(out) if t.deferred]
        if redo:
            settled = self.place_deferred([segments[i] for i in redo], [out[i] for i in redo])
            for i, found in zip(redo, settled, strict=True):
                out[i] = found
            redo = [i for i in redo if out[i].deferred]
        if redo:
            for i, found in zip(redo, self.constrain([segments[i] for i in redo]), strict=True):
                out[i] = found
        return out

    def translate_or_defer(
        self, segments: list[Segment], *, marked: bool = False
    ) -> list[Translation]:
        """`translate`, except that an engine whose glossary rows may need a second, slower
        search can return those rows `deferred`. The caller collects every deferred row of
        a shard, hands them to `place_deferred` together and those still deferred to
        `constrain` together: that search then runs on full
        batches, not on the few rows each batch leaves (CTranslate2: 1.8x faster on
        dev_consistent). Default: nothing is deferred."""
        return self.translate(segments, marked=marked)

    def place_deferred(
        self, segments: list[Segment], drafts: list[Translation]
    ) -> list[Translation]:
        """Deferred rows (`drafts`, their free translations) with what a cheaper step than
        `constrain` could settle; a row still `deferred` goes on to `constrain`. The caller
        hands every deferred row of a shard at once: an engine's per-call costs are then
        paid once per shard, not once per batch. Default: nothing settled here."""
        return drafts

    def constrain(self, segments: list[Segment]) -> list[Translation]:
        """Rows that `translate_or_defer` deferred, decoded with every term placed: by the
        declared `constrained` engine, else by this one."""
        return (self.constrained or self).translate(segments)

    @property
    def schedules_batches(self) -> bool:
        """Whether the engine batches by itself (vLLM's scheduler): the shard loop then
        hands it all of a shard's segments of one prompt shape in one call, rather than
        token-budget batches."""
        return False

    @property
    def translates_marked(self) -> bool:
        """Whether the engine translates text with `<sn>`-marked markup spans (HY-MT's
        formatted prompt). Otherwise markup is cut out and placed back by alignment."""
        return False

    @property
    def kv_token_budget(self) -> int | None:
        """Largest batch budget (in `batch_costs` units) the replica's memory holds; None when
        the job's `decoding.max_batch_tokens` is the only limit."""
        return None

    def batch_costs(self, segments: Sequence[Segment], source_tokens: Sequence[int]) -> list[int]:
        """What each segment costs against the batch budget; source tokens by default."""
        return list(source_tokens)

    def aligner(self) -> Aligner | None:
        """Word alignment used to place inline markup in translations; None when the model
        offers none (markup then goes back by order, or runs are translated apart)."""
        return None

    def score(self, segments: list[Segment], translations: list[str]) -> list[float | None]:
        """Forced decoding: the mean log-probability per token of each given translation
        (end of sentence included) given its segment, on the same scale as
        `Translation.logprob`. None per row when the engine cannot score (quality checks then
        run without the model's confidence)."""
        return [None] * len(segments)

    def torch_model(self) -> tuple[Any, Any] | None:
        """(the transformers model, its tokenizer) that decodes, for `batchmt quantize`'s
        calibration passes; None when the replica is not a torch model (CTranslate2)."""
        return None

    def fallback_engine(
        self, num_beams: int, no_repeat_ngram_size: int
    ) -> TranslationEngine | None:
        """The same replica decoding with a wider beam and repeated n-grams blocked, for the
        QE fallback (quality.fallback); None when the engine has no such search (rows are
        then kept as first translated)."""
        return None

    # -- conveniences ----------------------------------------------------------------------------

    def translate_batch(self, segments: list[Segment]) -> list[str]:
        """Translated texts only (callers that do not track unmet terms)."""
        return [t.text for t in self.translate(segments)]


def newest_context(
    segment: Segment, count_tokens: Callable[[list[str]], list[int]], limit: int
) -> Segment:
    """`segment` with the newest context segments that fit within `limit` tokens."""
    if not segment.context:
        return segment
    counts = count_tokens(list(segment.context))
    kept, total = 0, 0
    for count in reversed(counts):
        if total + count > limit:
            break
        kept, total = kept + 1, total + count
    context = segment.context[len(segment.context) - kept :] if kept else ()
    return Segment(segment.text, context, segment.terms)
