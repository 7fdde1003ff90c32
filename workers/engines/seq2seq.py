"""Encoder-decoder translation models: Marian/opus-mt and M2M100/NLLB.

One replica per actor: loaded once, optionally quantized, then fed length-sorted batches.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import structlog
import torch

from batchmt.pipeline.spec import JobSpec
from batchmt.workers.decoding.renderings import TermDefaults, seq2seq_n_best
from batchmt.workers.decoding.search import constrained_search
from batchmt.workers.engines.base import EngineLoadError, Segment
from batchmt.workers.engines.nllb_codes import nllb_code

log = structlog.get_logger(__name__)

# Headroom under the position limit for the special tokens the tokenizer adds.
_SPECIAL_TOKEN_MARGIN = 2


@dataclass
class Translation:
    text: str
    # Target terms of the segment that the decoder could not place (length limit, or a
    # term the vocabulary cannot write); empty when every term is in `text`.
    unmet_terms: list[str] = field(default_factory=list)


def _torch_dtype(name: str, device: torch.device) -> torch.dtype | str:
    """The weights' dtype; "auto" keeps the checkpoint's."""
    if name == "auto":
        return "auto"
    dtype: torch.dtype = getattr(torch, name)
    if device.type == "cpu" and dtype == torch.float16:
        raise EngineLoadError(
            "model.dtype=float16 is slow or unsupported on CPU; use float32 or bfloat16 there"
        )
    return dtype


class Seq2SeqEngine:
    """A transformers `AutoModelForSeq2SeqLM` replica on one device."""

    def __init__(self, spec: JobSpec, model_path: str, device: torch.device) -> None:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.spec = spec
        self.device = device
        if spec.model.quantization not in ("none", "int8"):
            raise EngineLoadError(
                f"model.quantization={spec.model.quantization} applies to decoder-only "
                "checkpoints released pre-quantized (HY-MT FP8 / GPTQ-Int4); seq2seq models "
                "take none or int8"
            )
        options: dict[str, Any] = {
            "trust_remote_code": spec.model.trust_remote_code,
            "revision": spec.model.revision,
        }
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_path, **options)
            model = AutoModelForSeq2SeqLM.from_pretrained(
                model_path, dtype=_torch_dtype(spec.model.dtype, device), **options
            )
        except (OSError, ValueError) as exc:
            raise EngineLoadError(
                f"could not load seq2seq model {spec.model.name_or_path!r}: {exc}"
            ) from exc
        model.eval()
        model = model.to(device)
        if spec.model.quantization != "none":
            from batchmt.workers.engines.quantize import quantize_model

            model = quantize_model(model, spec.model.quantization, device)
        self.model = model
        self.generate_kwargs = self._language_setup(model.config.model_type)
        self._search_setup(model)
        # Forced terms replace the model's own rendering of their source (learnt per term).
        self.term_defaults = TermDefaults(self.tokenizer, lambda t: seq2seq_n_best(self, t))
        self.max_input_tokens = self._input_limit(model.config)
        self.use_context = spec.context.window > 0 and spec.context.seq2seq_use_context
        if self.use_context and not getattr(self.tokenizer, "sep_token", None):
            raise EngineLoadError(
                f"context.seq2seq_use_context is set but {spec.model.name_or_path!r} has no "
                "separator token to mark where the context ends; use a document-level model "
                "or set context.seq2seq_use_context=false"
            )
        self.signature = {
            "model": spec.model.name_or_path,
            "family": "seq2seq",
            "quantization": spec.model.quantization,
            "dtype": str(model.dtype).removeprefix("torch."),
            "device": device.type,
        }

    def _language_setup(self, model_type: str) -> dict[str, Any]:
        """Multilingual models need the source code set and the target forced as BOS."""
        tok = self.tokenizer
        if not hasattr(tok, "src_lang"):
            return {}  # a bilingual model (Marian): the direction is baked in
        if model_type == "m2m_100" and hasattr(tok, "get_lang_id"):
            src, tgt = self.spec.source_lang, self.spec.target_lang
            tok.src_lang = src
            try:
                return {"forced_bos_token_id": tok.get_lang_id(tgt)}
            except KeyError:
                raise EngineLoadError(f"model does not know target language {tgt!r}") from None
        src, tgt = nllb_code(self.spec.source_lang), nllb_code(self.spec.target_lang)
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

    def _input_limit(self, config: Any) -> int:
        configured = self.spec.model.max_input_tokens
        positions = getattr(config, "max_position_embeddings", None) or 512
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

    def translate_batch(self, segments: list[Segment]) -> list[str]:
        return [t.text for t in self.translate_segments(segments)]

    @torch.inference_mode()
    def translate_segments(self, segments: list[Segment]) -> list[Translation]:
        """Translate one batch; segments with terms are decoded under their constraints."""
        sources = [self._source(s) for s in segments]
        inputs = self.tokenizer(sources, return_tensors="pt", padding=True, truncation=False)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        decoding = self.spec.decoding
        # Bound output by input length: one degenerate row must not hold the batch for
        # max_new_tokens steps while the others finished long ago.
        lengths = inputs["attention_mask"].sum(dim=1).tolist()
        limits = [
            max(
                1,
                min(
                    decoding.max_new_tokens, int(decoding.max_length_a * n + decoding.max_length_b)
                ),
            )
            for n in lengths
        ]
        if self.decoder == "hf" and not any(s.terms for s in segments):
            output = self.model.generate(
                **inputs,
                num_beams=decoding.num_beams,
                max_new_tokens=max(limits),
                max_length=None,  # the model's saved max_length would compete with max_new_tokens
                do_sample=False,
                **self.generate_kwargs,
            )
            return [Translation(t) for t in self._decode(output.tolist())]
        constraints = self.term_defaults.row_constraints([s.terms for s in segments])
        results = constrained_search(
            Seq2SeqStep(self.model, inputs, self.blocked_ids),
            constraints,
            num_beams=decoding.num_beams,
            max_len=limits,
            eos_id=self.eos_id,
            forced_prefix=self.forced_prefix,
            force_eos_at_max=self.force_eos_at_max,
        )
        unmet = sum(1 for r in results if not r.met)
        if unmet:
            log.warning("glossary_terms_unmet", rows=unmet, batch=len(segments))
        texts = self._decode([r.tokens for r in results])
        return [Translation(t, r.unmet) for t, r in zip(texts, results, strict=True)]

    def _decode(self, outputs: list[list[int]]) -> list[str]:
        if not self.use_context:
            texts = self.tokenizer.batch_decode(outputs, skip_special_tokens=True)
            return [t.strip() for t in texts]
        # A document-level model translates context and segment; keep what follows the
        # last separator, so the context is never emitted as part of the translation.
        raw = self.tokenizer.batch_decode(outputs, skip_special_tokens=False)
        sep = self.tokenizer.sep_token
        special = set(self.tokenizer.all_special_tokens)
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
