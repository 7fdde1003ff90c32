"""The engine interface: what the shard translator needs from a model family.

Encoder-decoder models (Marian, M2M100/NLLB) implement it in `seq2seq.py`; decoder-only
LLM translators (HY-MT) extend it with prompts. The shard loop (`translate.py`) only
talks to this interface, so batching, splitting and retries are written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Segment:
    """One unit the model translates: a row's text (or a piece of it) and its context."""

    text: str
    context: tuple[str, ...] = field(default_factory=tuple)
    # (source term, target term) pairs matched in `text`: every target term must appear in
    # the translation. Verbatim spans (placeholders, URLs, numbers) come as (span, span).
    terms: tuple[tuple[str, str], ...] = field(default_factory=tuple)


class TranslationEngine(Protocol):
    """A loaded model replica that translates batches of segments."""

    #: Longest source, in model tokens, the engine accepts without truncating.
    max_input_tokens: int
    #: Short description for logs and quality signatures, e.g. "demo-en-de int8 cpu".
    signature: dict[str, str]

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Source-token counts, as the model would see each text (no truncation)."""
        ...

    def translate_batch(self, segments: list[Segment]) -> list[str]:
        """Translate one batch; the batch fits the token budget. Raises on model failure."""
        ...


class EngineLoadError(RuntimeError):
    """The model could not be loaded; the message says which model and what to check."""
