"""Encoder-decoder translation models: Marian/opus-mt and M2M100/NLLB.

One replica per actor: loaded once, optionally quantized, then fed length-sorted batches.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from typing import Any

import torch

from batchmt.workers.decoding.no_repeat import NoRepeatStep
from batchmt.workers.decoding.renderings import PROBE_BEAMS, PROBE_MAX_TOKENS, TermDefaults
from batchmt.workers.decoding.search import DecoderStep, constrained_search
from batchmt.workers.decoding.terms import search_with_terms
from batchmt.workers.engines.base import (
    Aligner,
    EngineConfig,
    EngineLoadError,
    Segment,
    Translation,
    TranslationEngine,
)
from batchmt.workers.engines.dtypes import requested_dtype
from batchmt.workers.engines.nllb_codes import nllb_code
from batchmt.workers.engines.quantize import SEQ2SEQ_LINEARS, quantize_model
from batchmt.workers.quantization.folder import is_quantized_folder, load_quantized

# Headroom under the position limit for the special tokens the tokenizer adds.
_SPECIAL_TOKEN_MARGIN = 2


class Seq2SeqEngine(TranslationEngine):
    """A transformers `AutoModelForSeq2SeqLM` replica on one device."""

    def __init__(self, config: EngineConfig, model_path: str, device: torch.device) -> None:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.config = config
        self.device = device
        model_spec = config.model
        if model_spec.quantization not in ("none", "int8"):
            raise EngineLoadError(
                f"model.quantization={model_spec.quantization} applies to decoder-only "
                "checkpoints released pre-quantized (HY-MT FP8 / GPTQ-Int4); seq2seq models "
                "take none or int8"
            )
        options: dict[str, Any] = {
            "trust_remote_code": model_spec.trust_remote_code,
            "revision": model_spec.revision,
        }
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_path, **options)
            if is_quantized_folder(model_path):  # `batchmt quantize`'s output: packed layers
                model = load_quantized(
                    model_path,
                    "seq2seq",
                    requested_dtype(model_spec, device) or torch.float32,
                    device,
                    trust_remote_code=model_spec.trust_remote_code,
                    dequantize_at_load=model_spec.quantized_layers == "dequantized",
                )
            else:
                model = AutoModelForSeq2SeqLM.from_pretrained(
                    model_path, dtype=requested_dtype(model_spec, device) or "auto", **options
                )
        except (OSError, ValueError) as exc:
            raise EngineLoadError(
                f"could not load seq2seq model {config.model_name!r}: {exc}"
            ) from exc
        model.eval()
        model = model.to(device)
        if model_spec.quantization != "none":
            model = quantize_model(model, model_spec.quantization, device, SEQ2SEQ_LINEARS)
        self.model = model
        self.generate_kwargs = self._language_setup(model.config.model_type)
        self._search_setup(model)
        # Forced terms replace the model's own rendering of their source (learnt per term).
        self.term_defaults = TermDefaults(self.tokenizer, self._n_best)
        self.max_input_tokens = self._input_limit(model.config)
        self.no_repeat_ngram_size = 0  # set on the QE fallback's copy (fallback_engine)
        self.use_context = uses_context(config, self.tokenizer)
        self.signature = {
            "model": config.model_name,
            "family": "seq2seq",
            "quantization": model_spec.quantization,
            "dtype": str(model.dtype).removeprefix("torch."),
            "device": device.type,
        }

    def _language_setup(self, model_type: str) -> dict[str, Any]:
        """Multilingual models need the source code set and the target forced as BOS."""
        tok = self.tokenizer
        if not hasattr(tok, "src_lang"):
            return {}  # a bilingual model (Marian): the direction is baked in
        if model_type == "m2m_100" and hasattr(tok, "get_lang_id"):
            src, tgt = self.config.source_lang, self.config.target_lang
            tok.src_lang = src
            try:
                return {"forced_bos_token_id": tok.get_lang_id(tgt)}
            except KeyError:
                raise EngineLoadError(f"model does not know target language {tgt!r}") from None
        src, tgt = nllb_code(self.config.source_lang), nllb_code(self.config.target_lang)
        tok.src_lang = src
        bos = tok.convert_tokens_to_ids(tgt)
        if bos is None or bos == tok.unk_token_id:
            raise EngineLoadError(f"model does not know target language code {tgt!r}")
        return {"forced_bos_token_id": bos}

    def _search_setup(self, model: Any) -> None:
        """What HF generate's logits processors do, for our own search loop to do the same:
        bad single-token words (Marian's pad), forced BOS (language code), forced EOS."""
        gen = model.generation_config
        self.decoder = "ours"  # or "hf": generate for batches without terms
        eos = gen.eos_token_id if gen.eos_token_id is not None else model.config.eos_token_id
        self.eos_id = int(eos[0] if isinstance(eos, list) else eos)
        self.blocked_ids = [w[0] for w in (gen.bad_words_ids or []) if len(w) == 1]
        bos = self.generate_kwargs.get("forced_bos_token_id", gen.forced_bos_token_id)
        self.forced_prefix = [int(bos)] if bos is not None else []
        self.force_eos_at_max = gen.forced_eos_token_id is not None

    def _input_limit(self, model_config: Any) -> int:
        configured = self.config.model.max_input_tokens
        positions = getattr(model_config, "max_position_embeddings", None) or 512
        limit = min(positions, getattr(self.tokenizer, "model_max_length", positions) or positions)
        limit -= _SPECIAL_TOKEN_MARGIN
        return min(configured, limit) if configured else limit

    def _source(self, segment: Segment) -> str:
        if self.use_context and segment.context:
            sep = f" {self.tokenizer.sep_token} "
            return sep.join([*segment.context, segment.text])
        return segment.text

    def count_tokens(self, texts: list[str]) -> list[int]:
        # verbose=False: over-long texts are expected here (they get split), not a mistake.
        encoded = self.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]
        return [len(ids) for ids in encoded]

    def aligner(self) -> Aligner:
        """Cross-attention word alignment (teacher-forced on the translation)."""
        from batchmt.workers.engines.alignment import align

        def run(sources: list[str], targets: list[str]) -> list[Any]:
            return align(self.model, self.tokenizer, sources, targets)

        return run

    @torch.inference_mode()
    def translate(self, segments: list[Segment], *, marked: bool = False) -> list[Translation]:
        """Translate one batch; segments with terms are decoded under their constraints."""
        if marked:
            raise ValueError("seq2seq engines do not take <sn>-marked text (translates_marked)")
        sources = [self._source(s) for s in segments]
        inputs = self.tokenizer(sources, return_tensors="pt", padding=True, truncation=False)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        decoding = self.config.decoding
        lengths = inputs["attention_mask"].sum(dim=1).tolist()
        limits = [self.config.output_bound(n) for n in lengths]
        if self.decoder == "hf" and not any(s.terms for s in segments):
            output = self.model.generate(
                **inputs,
                num_beams=decoding.num_beams,
                max_new_tokens=max(limits),
                max_length=None,  # the model's saved max_length would compete with max_new_tokens
                do_sample=False,
                no_repeat_ngram_size=self.no_repeat_ngram_size,
                **self.generate_kwargs,
            )
            return [Translation(t) for t in self._decode(output.tolist())]
        step: DecoderStep = Seq2SeqStep(self.model, inputs, self.blocked_ids)
        if self.no_repeat_ngram_size:
            step = NoRepeatStep(step, self.no_repeat_ngram_size)
        results = search_with_terms(
            step,
            self.term_defaults.row_constraints([s.terms for s in segments]),
            num_beams=decoding.num_beams,
            max_len=limits,
            eos_id=self.eos_id,
            forced_prefix=self.forced_prefix,
            force_eos_at_max=self.force_eos_at_max,
        )
        texts = self._decode([r.tokens for r in results])
        # The search's score is the mean log-prob per generated token (length penalty 1).
        return [
            Translation(t, list(r.unmet), logprob=r.score)
            for t, r in zip(texts, results, strict=True)
        ]

    def torch_model(self) -> tuple[Any, Any]:
        return self.model, self.tokenizer

    def fallback_engine(self, num_beams: int, no_repeat_ngram_size: int) -> Seq2SeqEngine:
        """A view of this replica (same weights, no copy) with other search settings."""
        other = copy.copy(self)
        decoding = self.config.decoding.model_copy(update={"num_beams": num_beams})
        other.config = dataclasses.replace(self.config, decoding=decoding)
        other.no_repeat_ngram_size = no_repeat_ngram_size
        return other

    @torch.inference_mode()
    def score(self, segments: list[Segment], translations: list[str]) -> list[float | None]:
        """Teacher-forced mean log-prob per target token (the tokenizer's EOS included)."""
        if not segments:
            return []
        sources = [self._source(s) for s in segments]
        inputs = self.tokenizer(sources, return_tensors="pt", padding=True, truncation=False)
        targets = self.tokenizer(text_target=translations, padding=True, return_tensors="pt")
        labels = targets["input_ids"].to(self.device)
        mask = targets["attention_mask"].to(self.device).bool()
        out = self.model(
            input_ids=inputs["input_ids"].to(self.device),
            attention_mask=inputs["attention_mask"].to(self.device),
            labels=labels.masked_fill(~mask, -100),  # the model shifts labels right itself
        )
        logp = torch.log_softmax(out.logits.float(), dim=-1)
        picked = logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1).masked_fill(~mask, 0.0)
        means = picked.sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return [float(v) for v in means.tolist()]

    @torch.inference_mode()
    def _n_best(self, texts: list[str]) -> list[list[str]]:
        """Probe answers for `TermDefaults`: each source term translated alone by our own
        search, unconstrained, every finished beam (the model's default renderings)."""
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        results = constrained_search(
            Seq2SeqStep(self.model, inputs, self.blocked_ids),
            [None] * len(texts),
            num_beams=PROBE_BEAMS,
            max_len=PROBE_MAX_TOKENS,
            eos_id=self.eos_id,
            forced_prefix=self.forced_prefix,
            force_eos_at_max=self.force_eos_at_max,
        )
        return [self._decode([r.tokens, *r.others]) for r in results]

    def _decode(self, outputs: list[list[int]]) -> list[str]:
        if not self.use_context:
            texts = self.tokenizer.batch_decode(outputs, skip_special_tokens=True)
            return [t.strip() for t in texts]
        return after_last_separator(
            self.tokenizer, self.tokenizer.batch_decode(outputs, skip_special_tokens=False)
        )


def uses_context(config: EngineConfig, tokenizer: Any) -> bool:
    """Whether the model sees the context window: only when asked, and only a model with a
    separator token to mark where the context ends (a document-level model)."""
    wanted = config.context.window > 0 and config.context.seq2seq_use_context
    if wanted and not getattr(tokenizer, "sep_token", None):
        raise EngineLoadError(
            f"context.seq2seq_use_context is set but {config.model_name!r} has no "
            "separator token to mark where the context ends; use a document-level model "
            "or set context.seq2seq_use_context=false"
        )
    return wanted


def after_last_separator(tokenizer: Any, raw: list[str]) -> list[str]:
    """What a document-level model wrote after the last separator, special tokens removed:
    it translates context and segment, and the context must never be emitted as part of the
    translation."""
    sep, special = tokenizer.sep_token, set(tokenizer.all_special_tokens)
    cleaned = []
    for text in raw:
        tail = text.rsplit(sep, 1)[-1]
        for token in special:
            tail = tail.replace(token, "")
        cleaned.append(tail.strip())
    return cleaned


class Seq2SeqStep:
    """The model side of `constrained_search` for encoder-decoder models: the encoder runs
    once, the decoder one token per call on its KV cache, which follows the beams."""

    def __init__(self, model: Any, inputs: dict[str, torch.Tensor], blocked_ids: list[int]) -> None:
        self.model = model
        self.mask = inputs["attention_mask"]
        self.encoded = model.get_encoder()(
            input_ids=inputs["input_ids"], attention_mask=self.mask
        ).last_hidden_state
        self.start_id = int(model.config.decoder_start_token_id)
        self.blocked_ids = blocked_ids
        self.cache: Any = None
        # transformers 5 renamed `past_key_values` to `cache`; 4.x only knows the old name.
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    def __call__(self, tokens: torch.Tensor | None) -> torch.Tensor:
        if tokens is None:
            tokens = torch.full((self.encoded.shape[0],), self.start_id, device=self.mask.device)
        out = self.model(
            encoder_outputs=(self.encoded,),
            attention_mask=self.mask,
            decoder_input_ids=tokens[:, None],
            use_cache=True,
            **{self.cache_arg: self.cache},
        )
        self.cache = getattr(out, self.cache_arg)
        logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
        if self.blocked_ids:
            logp[:, self.blocked_ids] = -torch.inf
        return logp

    def reorder(self, index: torch.Tensor) -> None:
        self.encoded = self.encoded.index_select(0, index)
        self.mask = self.mask.index_select(0, index)
        self.cache.reorder_cache(index)
