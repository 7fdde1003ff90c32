"""Decoder-only translators (HY-MT1.5) decoded by vLLM, one engine per replica.

The shard loop hands a whole shard's segments to `translate_or_defer` in one call
(`schedules_batches`): vLLM's scheduler batches them continuously over its paged KV cache,
and the shared prompt template is computed once (prefix caching). What the transformers
path guarantees holds here too:

- prompts: HY-MT's official templates (engines/hymt/prompts.py) as one chat turn, the same
  token ids the transformers engine feeds (so `count_tokens` and the limits agree);
- glossary terms: rows with terms get the terminology prompt, their output is checked, and
  a row that still misses a term comes back `deferred`; the shard loop sends every such row
  of the shard to `constrain`, our constrained beam search on the transformers model, which
  the replica loads the first time a row needs it (as the CTranslate2 backend does);
- `<sn>` markup through the formatted template (`translates_marked`);
- QE: the mean log-prob per generated token (EOS included) from vLLM's sampled-token
  log-probs, and forced decoding (`score`) from its prompt log-probs;
- the QE fallback: the best of `num_beams` samples at HY-MT's recommended settings whose
  output repeats no n-gram of the fallback's size;
- each row's output bound (`a * n + b`, under max_new_tokens) as its own `max_tokens`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import structlog
import torch

from batchmt.pipeline.text.glossary import Term, check_terms
from batchmt.workers.decoding.renderings import (
    PROBE_BEAMS,
    PROBE_MAX_TOKENS,
    TermDefaults,
    default_rendering_left,
)
from batchmt.workers.engines.base import (
    EngineConfig,
    EngineLoadError,
    Segment,
    Translation,
    TranslationEngine,
)
from batchmt.workers.engines.causal import clean_output, compute_dtype
from batchmt.workers.engines.hymt.chat import ChatPrompts, stop_ids
from batchmt.workers.engines.vllm_backend.runtime import import_vllm
from batchmt.workers.engines.vllm_backend.settings import (
    check_packed_folder,
    compile_blocker,
    eager_config,
    engine_args,
    prepare_process,
    sampling_kwargs,
    vllm_dtype,
)

log = structlog.get_logger(__name__)
_T = TypeVar("_T")


class VllmEngine(TranslationEngine):
    """A `vllm.LLM` replica with HY-MT prompts; our constrained search behind it."""

    def __init__(
        self, config: EngineConfig, model_path: str, device: torch.device, *, hf_config: Any
    ) -> None:
        vllm = import_vllm()
        self.config = config
        self.device = device
        self.model_path = model_path
        self.hf_config = hf_config
        self.chat = ChatPrompts(config, model_path, hf_config)
        self.tokenizer = self.chat.tokenizer
        self.prompts = self.chat.prompts
        self.max_input_tokens = self.chat.max_input_tokens
        self.stop_ids = sorted(stop_ids(model_path, self.tokenizer, hf_config, config))
        prepare_process(device)
        check_packed_folder(config, hf_config, device)
        weights = _weights_bytes(hf_config, config, device)
        blocker = compile_blocker(device) if config.model.vllm_compile else None
        if blocker is not None:
            log.warning("vllm_compile_off", reason=blocker)
        try:
            self.llm = vllm.LLM(
                **engine_args(
                    config,
                    model_path,
                    device,
                    max_model_len=self.chat.positions,
                    weights_bytes=weights,
                    hf_config=hf_config,
                    eager=not config.model.vllm_compile or blocker is not None,
                )
            )
        except (ValueError, RuntimeError, OSError, ImportError) as exc:
            raise EngineLoadError(
                f"vLLM could not load {config.model_name!r} on {device.type}: {exc}"
            ) from exc
        self._sampling = vllm.SamplingParams
        self._warm_up()
        # The constrained search's transformers engine: the declared collaborator the loader
        # builds at replica start when the job has terms (load_constrained); views share it.
        self.constrained: TranslationEngine | None = None
        # Set on the QE fallback's view (fallback_engine): samples per row, n-gram size.
        self._candidates = 1
        self._no_repeat = 0
        self.term_defaults = TermDefaults(self.tokenizer, self._n_best)
        decoding = config.decoding
        mode = "sample" if decoding.do_sample else f"beam{decoding.num_beams}"
        self.signature = {
            "model": config.model_name,
            "family": "causal",
            "backend": "vllm",
            "prompts": "hy-mt1.5",
            "quantization": config.model.quantization,
            "dtype": vllm_dtype(config, hf_config, device),
            "device": device.type,
            "decoding": "greedy" if mode == "beam1" else mode,
            "vllm": str(getattr(vllm, "__version__", "")),
        }

    def _warm_up(self) -> None:
        """One two-token request with a log-prob, at load. vLLM ranks each sampled token
        with a torch.compile'd kernel (`batched_count_greater_than`) compiled on the first
        request that asks for log-probs (QE always does): 2 s from the compile cache, 10-15 s
        on a machine's first replica. Paid here, it counts in the replica's start, not in
        the first shard's time (measured in the #21 race; raw `LLM.generate` asks for none)."""
        ids = self.chat.ids([self.prompts.plain("Hello.")])
        params = self._sampling(max_tokens=2, temperature=0.0, logprobs=0, detokenize=False)
        try:
            self._run(
                lambda: self.llm.generate([{"prompt_token_ids": ids[0]}], params, use_tqdm=False)
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineLoadError(
                f"vLLM loaded {self.config.model_name!r} but could not decode with it on "
                f"{self.device.type}: {exc}"
            ) from exc

    # -- capabilities ------------------------------------------------------------------------

    @property
    def schedules_batches(self) -> bool:
        return True  # vLLM's scheduler batches; the shard loop sends the whole shard

    @property
    def translates_marked(self) -> bool:
        return True

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self.chat.count_tokens(texts)

    def batch_costs(self, segments: Sequence[Segment], source_tokens: Sequence[int]) -> list[int]:
        """KV-cache tokens per row, as the causal engine counts them: the constrained
        search (`constrain`) batches by these."""
        beams = self.config.decoding.num_beams
        lengths = [len(ids) for ids in self.chat.ids([self.chat.prompt(s) for s in segments])]
        bound = self.config.output_bound
        return [(n + bound(k)) * beams for n, k in zip(lengths, source_tokens, strict=True)]

    # -- translation ---------------------------------------------------------------------------

    def translate(self, segments: list[Segment], *, marked: bool = False) -> list[Translation]:
        return self.resolve_deferred(segments, self.translate_or_defer(segments, marked=marked))

    def translate_or_defer(
        self, segments: list[Segment], *, marked: bool = False
    ) -> list[Translation]:
        """Every row decoded by vLLM in one call; a row that misses a glossary term comes
        back `deferred` for `constrain`."""
        if not segments:
            return []
        if marked:
            segments = [Segment(s.text, (), s.terms) for s in segments]
            prompts = [self.prompts.formatted(s.text) for s in segments]
        else:
            segments = [self.chat.with_context(s) for s in segments]
            prompts = [self.chat.prompt(s) for s in segments]
        sources = self.count_tokens([s.text for s in segments])
        bounds = [self.config.output_bound(n) for n in sources]
        out = self._generate(self.chat.ids(prompts), bounds, segments)
        with_terms = [i for i, s in enumerate(segments) if s.terms]
        if with_terms:
            self.term_defaults.learn(
                s for i in with_terms for s, t in segments[i].terms if s.casefold() != t.casefold()
            )
        for i in with_terms:
            if not self._meets_terms(out[i].text, segments[i]):
                out[i] = dataclasses.replace(out[i], deferred=True)
        return out

    def constrain(self, segments: list[Segment]) -> list[Translation]:
        return self.constrained_engine().translate(segments)

    def _generate(
        self, prompts: list[list[int]], bounds: list[int], segments: Sequence[Segment]
    ) -> list[Translation]:
        decoding = self.config.decoding
        if self._candidates > 1:
            decoding = decoding.model_copy(update={"do_sample": True})
        if decoding.num_beams > 1 and not decoding.do_sample:
            return self._beam_search(prompts, bounds, segments)
        params = [
            self._sampling(
                n=self._candidates,
                **sampling_kwargs(decoding, b, self.stop_ids, self.device.type),
            )
            for b in bounds
        ]
        requests = [{"prompt_token_ids": ids} for ids in prompts]
        results = self._run(lambda: self.llm.generate(requests, params, use_tqdm=False))
        found: list[Translation] = []
        for result, segment in zip(results, segments, strict=True):
            options = [
                (_mean(o.cumulative_logprob, len(o.token_ids)), list(o.token_ids))
                for o in result.outputs
            ]
            score, ids = self._pick(options)
            found.append(Translation(self._text(ids, segment), logprob=score))
        return found

    def _pick(
        self, options: list[tuple[float | None, list[int]]]
    ) -> tuple[float | None, list[int]]:
        """The best-scored candidate; on the fallback's view, among those that repeat no
        n-gram (all of them when every one does)."""
        if len(options) > 1 and self._no_repeat:
            clean = [o for o in options if not _repeats(o[1], self._no_repeat)]
            options = clean or options
        return max(options, key=lambda o: o[0] if o[0] is not None else -float("inf"))

    def _text(self, ids: Sequence[int], segment: Segment) -> str:
        body = [t for t in ids if t not in self.stop_ids]
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        return clean_output(text, segment.context)

    def _beam_search(
        self, prompts: list[list[int]], bounds: list[int], segments: Sequence[Segment]
    ) -> list[Translation]:
        """vLLM's beam search (`LLM.beam_search`), to the batch's longest bound; each row
        is cut at its own bound and first stop token, as the transformers engine does."""
        from vllm.sampling_params import BeamSearchParams

        params = BeamSearchParams(beam_width=self.config.decoding.num_beams, max_tokens=max(bounds))
        requests = [{"prompt_token_ids": p} for p in prompts]
        results = self._run(lambda: self.llm.beam_search(requests, params))
        found = []
        for result, prompt, bound, segment in zip(results, prompts, bounds, segments, strict=True):
            best = result.sequences[0]
            decoded = list(best.tokens[len(prompt) :])
            cut = next((k for k, t in enumerate(decoded) if t in self.stop_ids), len(decoded))
            ids = decoded[: min(cut + 1, bound)]
            # The beam's score covers every token it decoded; a row cut to its own (shorter)
            # bound gets no score here, and QE scores its text by forced decoding instead.
            logprob = _mean(best.cum_logprob, len(decoded)) if len(ids) == len(decoded) else None
            found.append(Translation(self._text(ids, segment), logprob=logprob))
        return found

    def _run(self, call: Callable[[], _T]) -> _T:
        """One vLLM call; when it raises, its unfinished requests are aborted first, or they
        would stay in the scheduler and the shard loop's retry of the halves would wait on
        them for ever."""
        try:
            return call()
        except Exception:
            engine = self.llm.llm_engine
            try:
                unfinished = list(engine.output_processor.request_states)
                if unfinished:
                    engine.abort_request(unfinished, internal=True)
            except Exception as exc:  # noqa: BLE001 - the original error is the one to raise
                log.warning("vllm_abort_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            raise

    # -- glossary terms ------------------------------------------------------------------------

    def _meets_terms(self, text: str, segment: Segment) -> bool:
        """Every term is in `text` (exact form), and no forced term sits beside the model's
        own rendering of its source (the CTranslate2 backend's rule)."""
        _, missed = check_terms(text, [Term(s, t, True) for s, t in segment.terms])
        if missed:
            return False
        return not default_rendering_left(text, segment.terms, self.term_defaults.renderings)

    def _n_best(self, texts: list[str]) -> list[list[str]]:
        """Probe answers for `TermDefaults`: each source term through the plain prompt,
        vLLM's beam search, every finished beam (the model's default renderings)."""
        from vllm.sampling_params import BeamSearchParams

        prompts = self.chat.ids([self.prompts.plain(t) for t in texts])
        params = BeamSearchParams(beam_width=PROBE_BEAMS, max_tokens=PROBE_MAX_TOKENS)
        requests = [{"prompt_token_ids": p} for p in prompts]
        results = self._run(lambda: self.llm.beam_search(requests, params))
        found = []
        for result, prompt in zip(results, prompts, strict=True):
            answers = []
            for seq in result.sequences:
                ids = [t for t in seq.tokens[len(prompt) :] if t not in self.stop_ids]
                answers.append(
                    clean_output(self.tokenizer.decode(ids, skip_special_tokens=True), ())
                )
            found.append(answers)
        return found

    def constrained_engine(self) -> TranslationEngine:
        """The transformers engine on the same checkpoint: the loader builds it at replica
        start when the job has terms (workers/engines/loading.py)."""
        if self.constrained is None:
            from vllm.config import set_current_vllm_config

            from batchmt.workers.engines.causal import CausalEngine

            log.info("constrained_decoder_loading", model=self.config.model_name)
            # vLLM's transformers backend decorates the model classes it runs in place
            # (HunYuanDenseV1Model among them): building one here needs a vLLM config
            # current, and an instance built under the engine's own would run through
            # vLLM's compiled forward (its shape guards fail our batches).
            with set_current_vllm_config(eager_config(self.llm.llm_engine.vllm_config)):
                self.constrained = CausalEngine(
                    self.config, self.model_path, self.device, hf_config=self.hf_config
                )
        return self.constrained

    # -- QE ----------------------------------------------------------------------------------

    def score(self, segments: list[Segment], translations: list[str]) -> list[float | None]:
        """Forced decoding: the mean log-prob per token of each translation plus the end
        token, after the segment's plain prompt, from vLLM's prompt log-probs."""
        if not segments:
            return []
        prompts = self.chat.ids([self.prompts.plain(s.text) for s in segments])
        eos = self.stop_ids[0] if self.chat.eos_id is None else self.chat.eos_id
        answers = [
            [*self.tokenizer(t, add_special_tokens=False)["input_ids"], eos] for t in translations
        ]
        params = self._sampling(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        requests = [{"prompt_token_ids": p + a} for p, a in zip(prompts, answers, strict=True)]
        results = self._run(lambda: self.llm.generate(requests, params, use_tqdm=False))
        found: list[float | None] = []
        for result, prompt, answer in zip(results, prompts, answers, strict=True):
            positions = (result.prompt_logprobs or [])[len(prompt) :]
            values = [
                entry[token].logprob
                for entry, token in zip(positions, answer, strict=False)
                if entry is not None and token in entry
            ]
            found.append(sum(values) / len(values) if len(values) == len(answer) else None)
        return found

    def fallback_engine(self, num_beams: int, no_repeat_ngram_size: int) -> VllmEngine:
        """A view of this replica (same vLLM engine): `num_beams` samples per row at HY-MT's
        recommended settings, the best-scored one that repeats no n-gram of the given size."""
        other = copy.copy(self)
        other._candidates = max(1, num_beams)
        other._no_repeat = no_repeat_ngram_size
        return other


def _mean(total: float | None, tokens: int) -> float | None:
    return None if total is None else float(total) / max(1, tokens)


def _repeats(ids: Sequence[int], size: int) -> bool:
    seen: set[tuple[int, ...]] = set()
    for k in range(len(ids) - size + 1):
        gram = tuple(ids[k : k + size])
        if gram in seen:
            return True
        seen.add(gram)
    return False


def _weights_bytes(hf_config: Any, config: EngineConfig, device: torch.device) -> int:
    """The unquantized weights' bytes (what the constrained model would need beside vLLM)."""
    if device.type != "cuda":
        return 0
    from batchmt.workers.engines.memory import footprint
    from batchmt.workers.engines.prequantized import without_quantization

    dtype = compute_dtype(config, device)
    return footprint(
        without_quantization(hf_config), config.model.quantization, dtype, device
    ).weights
