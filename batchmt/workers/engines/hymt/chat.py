"""HY-MT prompts as token ids, for engines that take prompts as ids (vLLM): the tokenizer,
the chat turn, context trimming, the input limit and the stop tokens, by the same rules as
the transformers engine (engines/causal.py), so both backends see the same model input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchmt.workers.engines.base import EngineConfig, EngineLoadError, Segment, newest_context
from batchmt.workers.engines.hymt.prompts import PromptBuilder

# A source shorter than this could not be translated within max_new_tokens (causal.py).
_MIN_INPUT_TOKENS = 8


class ChatPrompts:
    def __init__(self, config: EngineConfig, model_path: str, hf_config: Any) -> None:
        from transformers import AutoTokenizer

        self.config = config
        try:
            self.prompts = PromptBuilder(config.source_lang, config.target_lang)
        except ValueError as exc:
            raise EngineLoadError(f"{exc} (source_lang / target_lang in the job config)") from None
        try:
            self.tokenizer: Any = AutoTokenizer.from_pretrained(
                model_path,
                trust_remote_code=config.model.trust_remote_code,
                revision=config.model.revision,
            )
        except (OSError, ValueError) as exc:
            raise EngineLoadError(
                f"could not load the tokenizer of {config.model_name!r}: {exc}"
            ) from exc
        if not getattr(self.tokenizer, "chat_template", None):
            raise EngineLoadError(
                f"the tokenizer of {config.model_name!r} has no chat template; HY-MT prompts "
                "are sent as a chat turn (HY-MT checkpoints ship chat_template.jinja)"
            )
        #: Positions the model holds (prompt + answer): vLLM's max_model_len.
        self.positions = int(getattr(hf_config, "max_position_embeddings", 0) or 2048)
        self.max_input_tokens = self._input_limit()
        eos = getattr(self.tokenizer, "eos_token_id", None)
        self.eos_id: int | None = int(eos) if isinstance(eos, int) else None

    def count_tokens(self, texts: list[str]) -> list[int]:
        encoded = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def prompt(self, segment: Segment) -> str:
        return self.prompts.for_segment(segment)

    def ids(self, prompts: Sequence[str]) -> list[list[int]]:
        """Each prompt as one user turn, no system prompt, ready for the answer."""
        texts = [
            str(
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
                )
            )
            for p in prompts
        ]
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def with_context(self, segment: Segment) -> Segment:
        """The newest context segments that fit within max_input_tokens tokens."""
        return newest_context(segment, self.count_tokens, self.max_input_tokens)

    def _input_limit(self) -> int:
        """Longest source whose prompt and full translation fit: the output bound within
        max_new_tokens, and prompt + context + output within the model's positions."""
        decoding = self.config.decoding
        overhead = max(
            len(i) for i in self.ids([self.prompts.plain(""), self.prompts.formatted("")])
        )
        by_output = int((decoding.max_new_tokens - decoding.max_length_b) / decoding.max_length_a)
        share = 2 if self.config.context.window > 0 else 1
        by_positions = (self.positions - overhead - decoding.max_new_tokens) // share
        limit = max(_MIN_INPUT_TOKENS, min(by_output, by_positions))
        configured = self.config.model.max_input_tokens
        return min(configured, limit) if configured else limit


def stop_ids(model_path: str, tokenizer: Any, hf_config: Any, config: EngineConfig) -> set[int]:
    """Every id that ends an answer: generation_config.json's (HY-MT lists its own), the
    tokenizer's and the model config's EOS."""
    found: set[int] = set()
    values: list[Any] = [
        getattr(tokenizer, "eos_token_id", None),
        getattr(hf_config, "eos_token_id", None),
    ]
    from transformers import GenerationConfig

    try:
        generation = GenerationConfig.from_pretrained(
            model_path, revision=config.model.revision or "main"
        )
        values.append(generation.eos_token_id)
    except (OSError, ValueError):
        pass  # no generation_config.json: the tokenizer's and config's EOS
    for value in values:
        found.update(value if isinstance(value, list) else [value] if value is not None else [])
    if not found:
        raise EngineLoadError(
            f"model {config.model_name!r} names no end-of-sequence token (eos_token_id in "
            "generation_config.json or config.json); decoding could not stop"
        )
    return {int(v) for v in found}
