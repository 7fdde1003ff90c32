"""Decoder-only LLM translators (HY-MT1.5, `HunYuanDenseV1ForCausalLM`) as a TranslationEngine.

Each segment becomes HY-MT's official prompt (engines/hymt/prompts.py) inside the tokenizer's chat
template; batches are left-padded so every row's next token sits in the last column.
Decoding runs over the model with a KV cache (`CausalStep`, prefill once, one token per
step): beam search and glossary constraints through `workers/decoding/`'s search, greedy
and sampling in `decoding/sampling.py`; finished rows leave the batch in both.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any

import torch

from batchmt.workers.decoding.renderings import PROBE_BEAMS, PROBE_MAX_TOKENS, TermDefaults
from batchmt.workers.decoding.sampling import decode_rows, greedy, sampler
from batchmt.workers.decoding.search import constrained_search
from batchmt.workers.decoding.terms import search_with_terms
from batchmt.workers.engines.base import (
    EngineConfig,
    EngineLoadError,
    Segment,
    Translation,
    TranslationEngine,
    newest_context,
)
from batchmt.workers.engines.dtypes import requested_dtype
from batchmt.workers.engines.hymt.prompts import (
    PromptBuilder,
    strip_echoed_context,
    strip_target,
)
from batchmt.workers.engines.memory import available_bytes, check_fit, footprint
from batchmt.workers.engines.prequantized import prequantized_config, without_quantization
from batchmt.workers.engines.quantize import CAUSAL_LINEARS, quantize_model
from batchmt.workers.quantization.folder import is_quantized_folder, load_quantized

# Special-token spellings that survive skip_special_tokens when a checkpoint registers them
# as plain added tokens (HY-MT's "<｜hy_...｜>" family).
_STRAY_SPECIAL = re.compile(r"<｜[^｜<>]{1,40}｜>")
# A source shorter than this could not be translated within max_new_tokens; never go below.
_MIN_INPUT_TOKENS = 8


class CausalStep:
    """The model side of `workers/decoding/search.py`'s search for decoder-only models (its
    `DecoderStep` protocol): `step(None)` prefills the prompts and returns the first
    token's log-probs, one row per prompt; `step(tokens)` appends one token per live
    hypothesis and returns the next log-probs [H, vocab]; `reorder(index)` keeps hypothesis
    `index[j]` as hypothesis j, so one index_select on the KV cache expands prompts into
    beams, reorders beams and drops finished rows alike.
    """

    def __init__(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        blocked_ids: Sequence[int] = (),
    ) -> None:
        from transformers import DynamicCache

        self.model = model
        self.input_ids = input_ids
        self.mask = attention_mask
        self.blocked_ids = list(blocked_ids)
        self.cache = DynamicCache(config=model.config)
        # transformers 5 renamed past_key_values to cache; 4.56+ (our floor) has the old name.
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def __call__(self, tokens: torch.Tensor | None) -> torch.Tensor:
        if tokens is None:
            # Left padding: positions count real tokens only, so padding shifts nothing.
            positions = (self.mask.long().cumsum(-1) - 1).clamp(min=0)
            return self._forward(self.input_ids, positions)
        # A row's next position is the number of real tokens it holds.
        positions = self.mask.long().sum(-1, keepdim=True)
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        return self._forward(tokens.view(-1, 1), positions)

    def reorder(self, index: torch.Tensor) -> None:
        if index.numel() == self.mask.shape[0] and bool(
            (index == torch.arange(index.numel(), device=index.device)).all()
        ):
            return  # nothing left, nothing fanned out: skip copying the cache
        self.cache.reorder_cache(index)  # type: ignore[arg-type]
        self.mask = self.mask.index_select(0, index)

    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        output = self.model(
            input_ids=input_ids,
            attention_mask=self.mask,
            position_ids=positions,
            use_cache=True,
            # Logits for the last position only: a full [rows, prompt, vocab] tensor for a
            # 120k vocabulary would outweigh the KV cache.
            logits_to_keep=1,
            **{self._cache_kw: self.cache},
        )
        logp = output.logits[:, -1, :].float().log_softmax(-1)
        if self.blocked_ids:
            logp[:, self.blocked_ids] = -torch.inf
        return logp


def compute_dtype(config: EngineConfig, device: torch.device) -> torch.dtype:
    """bf16 on GPU, fp32 on CPU, unless model.dtype names one ("auto" means that default)."""
    dtype = requested_dtype(config.model, device)
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if config.model.quantization == "int8" and device.type == "cpu" and dtype != torch.float32:
        raise EngineLoadError(
            "model.quantization=int8 on CPU computes in float32 (fbgemm kernels); set "
            "model.dtype=auto or float32"
        )
    return dtype


def clean_output(text: str, context: Sequence[str]) -> str:
    text = _STRAY_SPECIAL.sub("", strip_target(text))
    return strip_echoed_context(text, context).strip()


PREQUANTIZED = ("fp8", "gptq-int4")


class CausalEngine(TranslationEngine):
    """A transformers `AutoModelForCausalLM` translator replica (HY-MT1.5 prompts)."""

    def __init__(
        self,
        config: EngineConfig,
        model_path: str,
        device: torch.device,
        *,
        hf_config: Any = None,
        memory_bytes: int | None = None,
    ) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.device = device
        name = config.model_name
        options: dict[str, Any] = {
            "trust_remote_code": config.model.trust_remote_code,
            "revision": config.model.revision,
        }
        try:
            self.prompts = PromptBuilder(config.source_lang, config.target_lang)
        except ValueError as exc:
            raise EngineLoadError(f"{exc} (source_lang / target_lang in the job config)") from None
        if hf_config is None:
            hf_config = AutoConfig.from_pretrained(model_path, **options)
        quantization = config.model.quantization
        ours = is_quantized_folder(model_path)  # `batchmt quantize`'s output: packed layers
        if not ours:
            hf_config = prequantized_config(hf_config, quantization, device, name)
        dtype = compute_dtype(config, device)

        # Refuse before loading gigabytes: weights + KV cache for the batch budget.
        need = footprint(without_quantization(hf_config), quantization, dtype, device)
        available = memory_bytes if memory_bytes is not None else available_bytes(device)
        # The largest KV-cache token budget per batch this replica's memory allows.
        self._kv_budget = check_fit(
            need,
            config.decoding.max_batch_tokens,
            available,
            model_name=name,
            quantization=quantization,
            device=device,
        )
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_path, **options)
            if ours:
                trust = config.model.trust_remote_code
                model = load_quantized(
                    model_path,
                    "causal",
                    dtype,
                    device,
                    trust_remote_code=trust,
                    dequantize_at_load=config.model.quantized_layers == "dequantized",
                )
            else:
                model = AutoModelForCausalLM.from_pretrained(
                    model_path,
                    config=hf_config,
                    dtype=dtype,
                    # Pre-quantized weights are placed by their quantizer, straight on the GPU.
                    **({"device_map": {"": device}} if quantization in PREQUANTIZED else {}),
                    **options,
                )
        except (OSError, ValueError, ImportError) as exc:
            raise EngineLoadError(f"could not load causal LM {name!r}: {exc}") from exc
        if not getattr(tokenizer, "chat_template", None):
            raise EngineLoadError(
                f"the tokenizer of {name!r} has no chat template; HY-MT prompts are sent as a "
                "chat turn (HY-MT checkpoints ship chat_template.jinja): check the model folder"
            )
        # Left padding puts every row's last prompt token in the last column.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        model.eval()
        # Typed loosely: after int8 the replica is a plain nn.Module with swapped layers.
        self.model: Any = model
        if quantization == "int8":
            self.model = quantize_model(model, "int8", device, CAUSAL_LINEARS)
        elif quantization == "none":
            self.model = model.to(device)
        self.stop_ids = self._stop_ids(self.model)
        # The search ends a hypothesis at one EOS id: the generation config's own.
        eos = self.model.generation_config.eos_token_id
        self.eos_id = (
            int(eos[0] if isinstance(eos, list) else eos) if eos is not None else min(self.stop_ids)
        )
        # Padding is never an answer token (left padding means it is never a context either).
        self.blocked_ids = (
            [tokenizer.pad_token_id] if tokenizer.pad_token_id not in self.stop_ids else []
        )
        #: "ours": beam search through workers/decoding/ (finished rows leave the batch);
        #: "hf": transformers' generate for batches without terms (the reference).
        self.decoder = "ours"
        # Forced terms replace the model's own rendering of their source (learnt per term).
        self.term_defaults = TermDefaults(tokenizer, self._n_best)
        self.max_input_tokens = self._input_limit(hf_config)
        decoding = config.decoding
        mode = "sample" if decoding.do_sample else f"beam{decoding.num_beams}"
        self.signature = {
            "model": name,
            "family": "causal",
            "prompts": "hy-mt1.5",
            "quantization": quantization,
            "dtype": str(dtype).removeprefix("torch."),
            "device": device.type,
            "decoding": "greedy" if mode == "beam1" else mode,
        }

    # -- sizes -----------------------------------------------------------------------------

    def torch_model(self) -> tuple[Any, Any]:
        return self.model, self.tokenizer

    def _stop_ids(self, model: Any) -> set[int]:
        """Every id that ends an answer: generation_config's (HY-MT lists its own), the
        tokenizer's and the model config's EOS."""
        found: set[int] = set()
        for source in (model.generation_config, self.tokenizer, model.config):
            value = getattr(source, "eos_token_id", None)
            found.update(value if isinstance(value, list) else [value] if value is not None else [])
        if not found:
            raise EngineLoadError(
                f"model {self.config.model_name!r} names no end-of-sequence token "
                "(eos_token_id in generation_config.json or config.json); decoding could not stop"
            )
        return found

    @torch.inference_mode()
    def _n_best(self, texts: list[str]) -> list[list[str]]:
        """Probe answers for `TermDefaults`: each source term through the plain translation
        prompt, beam search, every finished beam (the model's default renderings)."""
        prompts = self._chat([self.prompts.plain(t) for t in texts])
        inputs = self.tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        results = constrained_search(
            CausalStep(self.model, inputs["input_ids"], inputs["attention_mask"], self.blocked_ids),
            [None] * len(texts),
            num_beams=PROBE_BEAMS,
            max_len=PROBE_MAX_TOKENS,
            eos_id=self.eos_id,
            force_eos_at_max=False,
        )
        decode = self.tokenizer.batch_decode
        return [
            [clean_output(t, ()) for t in decode([r.tokens, *r.others], skip_special_tokens=True)]
            for r in results
        ]

    def _chat(self, prompts: Sequence[str]) -> list[str]:
        """Each prompt as one user turn, no system prompt, ready for the assistant's answer."""
        return [
            str(
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": prompt}],
                    tokenize=False,
                    add_generation_prompt=True,
                )
            )
            for prompt in prompts
        ]

    def _prompt_lengths(self, prompts: Sequence[str]) -> list[int]:
        encoded = self.tokenizer(self._chat(prompts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def _input_limit(self, hf_config: Any) -> int:
        """Longest source (in tokens) whose prompt and full translation fit the model.

        Two bounds: the output bound (a x source + b) must stay within max_new_tokens, or a
        long row's translation would be cut off; and prompt + context + output must fit the
        model's positions. Longer text is split by the shard loop instead.
        """
        decoding = self.config.decoding
        positions = int(getattr(hf_config, "max_position_embeddings", 0) or 2048)
        overhead = max(self._prompt_lengths([self.prompts.plain(""), self.prompts.formatted("")]))
        by_output = int((decoding.max_new_tokens - decoding.max_length_b) / decoding.max_length_a)
        # Context gets at most as many tokens as the source (see _with_context).
        share = 2 if self.config.context.window > 0 else 1
        by_positions = (positions - overhead - decoding.max_new_tokens) // share
        limit = max(_MIN_INPUT_TOKENS, min(by_output, by_positions))
        configured = self.config.model.max_input_tokens
        return min(configured, limit) if configured else limit

    @property
    def kv_token_budget(self) -> int:
        """KV-cache tokens per batch that the memory check found room for."""
        return self._kv_budget

    @property
    def translates_marked(self) -> bool:
        return True  # HY-MT's formatted prompt keeps <sn> spans in place

    def count_tokens(self, texts: list[str]) -> list[int]:
        # The source text alone: the shard loop splits by it; prompt overhead is accounted
        # for in max_input_tokens and batch_costs.
        encoded = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def batch_costs(self, segments: Sequence[Segment], source_tokens: Sequence[int]) -> list[int]:
        """KV-cache tokens each segment holds at its peak: (prompt + output bound) x beams.

        Feed these to `plan_batches` as lengths, with a budget of at most
        `self.kv_token_budget`, so that a batch's KV cache fits the memory check's numbers.
        """
        decoding = self.config.decoding
        beams = 1 if decoding.do_sample else decoding.num_beams
        prompts = [self.prompts.for_segment(self._with_context(s)) for s in segments]
        lengths = self._prompt_lengths(prompts)
        bound = self.config.output_bound
        return [(n + bound(k)) * beams for n, k in zip(lengths, source_tokens, strict=True)]

    def _with_context(self, segment: Segment) -> Segment:
        """Keep the newest context segments that fit within max_input_tokens tokens."""
        return newest_context(segment, self.count_tokens, self.max_input_tokens)

    # -- translation -----------------------------------------------------------------------

    def translate(self, segments: list[Segment], *, marked: bool = False) -> list[Translation]:
        """Translate one batch; rows with terms are decoded under their constraints and
        report the terms the decoder could not place.

        `marked`: the text carries <sn></sn> markup (workers/formats/sn_tags.py makes it) and
        goes through HY-MT's formatted template; the answer comes back without its <target>
        wrapper, tags kept for the shard loop to restore.
        """
        if marked:
            segments = [Segment(s.text, (), s.terms) for s in segments]
            prompts = [self.prompts.formatted(s.text) for s in segments]
        else:
            segments = [self._with_context(s) for s in segments]
            prompts = [self.prompts.for_segment(s) for s in segments]
        return self._translate(segments, prompts)

    @torch.inference_mode()
    def _translate(self, segments: list[Segment], prompts: list[str]) -> list[Translation]:
        inputs = self.tokenizer(
            self._chat(prompts), return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        sources = self.count_tokens([s.text for s in segments])
        bounds = [self.config.output_bound(n) for n in sources]
        decoding = self.config.decoding
        unmet: list[list[str]] = [[] for _ in segments]
        scores: list[float | None] = [None] * len(segments)
        if any(s.terms for s in segments) or (
            decoding.num_beams > 1 and not decoding.do_sample and self.decoder == "ours"
        ):
            # Terms are a guarantee, not a request: such batches take the constrained beam
            # search even when sampling is on (the terminology prompt alone only asks).
            results = search_with_terms(
                CausalStep(self.model, ids, mask, self.blocked_ids),
                self.term_defaults.row_constraints([s.terms for s in segments]),
                num_beams=decoding.num_beams,
                max_len=bounds,
                eos_id=self.eos_id,
                force_eos_at_max=False,  # causal LMs have no forced EOS; a cut row stays cut
            )
            outputs = [r.tokens for r in results]
            unmet = [list(r.unmet) for r in results]
            scores = [r.score for r in results]
        elif decoding.do_sample or decoding.num_beams == 1:
            choose = sampler(decoding, self.device) if decoding.do_sample else greedy
            step = CausalStep(self.model, ids, mask, self.blocked_ids)
            outputs, means = decode_rows(step, ids, bounds, self.stop_ids, choose)
            scores = list(means)
        else:
            outputs = self._beam_search(inputs, bounds)
        texts = self.tokenizer.batch_decode(outputs, skip_special_tokens=True)
        return [
            Translation(clean_output(text, s.context), missing, logprob=score)
            for text, s, missing, score in zip(texts, segments, unmet, scores, strict=True)
        ]

    def _beam_search(self, inputs: Any, bounds: list[int]) -> list[list[int]]:
        """Unconstrained beam search through `generate` (it handles left padding)."""
        stop = sorted(self.stop_ids)
        output = self.model.generate(
            **inputs,
            num_beams=self.config.decoding.num_beams,
            do_sample=False,
            max_new_tokens=max(bounds),
            max_length=None,
            eos_token_id=stop,
            pad_token_id=self.tokenizer.pad_token_id,
            # The checkpoint's sampling defaults would only produce "ignored" warnings here.
            temperature=None,
            top_k=None,
            top_p=None,
        )
        new = output[:, inputs["input_ids"].shape[1] :].tolist()
        rows = []
        for ids, bound in zip(new, bounds, strict=True):
            cut = next((i for i, t in enumerate(ids) if t in self.stop_ids), len(ids))
            # generate's length limit is the batch's longest bound; each row keeps its own,
            # as in the greedy loop.
            rows.append(ids[: min(cut, bound)])
        return rows
