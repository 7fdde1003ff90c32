"""Translate a shard's texts: nothing lost, one bad row never takes its batch down.

- null / empty / whitespace-only text: status says so, no model call;
- text over the model's input limit: split into pieces, translated, joined, flagged;
- a batch that raises: retried in halves down to single rows, and only the row that
  still fails records the error.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from pipeline.status import EMPTY, FAILED, OK, OK_SPLIT
from workers.batching import plan_batches
from workers.engine import Segment, TranslationEngine
from workers.splitting import Piece, join_pieces, split_for_model

log = structlog.get_logger(__name__)

_KEEP_CONTROLS = {"\t", "\n", "\r"}
# Terminal escape sequences (colour codes pasted from logs): the whole sequence goes.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
# Invisible characters with no meaning inside a word (zero-width space, BOM, word joiner,
# soft hyphen) split words into unknown pieces for the model.
_INVISIBLE = re.compile("[\u200b\ufeff\u2060\u00ad]")
# ZWNJ/ZWJ matter in Persian, Indic scripts and emoji sequences; between two Latin
# letters they are noise.
_LATIN_JOINER = re.compile("(?<=[A-Za-z])[\u200c\u200d](?=[A-Za-z])")
# Target languages written without spaces between sentences.
_UNSPACED_TARGETS = ("zh", "ja", "th", "yue", "bo", "my", "km", "lo")
_MAX_ERROR_CHARS = 500


@dataclass
class RowResult:
    translation: str | None
    status: str
    error: str | None = None


@dataclass
class TranslateStats:
    source_tokens: int = 0
    batches: int = 0
    batch_failures: int = 0


@dataclass
class _Unit:
    row: int
    piece: int
    segment: Segment
    tokens: int
    output: str | None = None
    error: str | None = None


@dataclass
class _Row:
    pieces: list[Piece]
    lead: str
    trail: str
    units: list[_Unit] = field(default_factory=list)


def clean_text(text: str) -> str:
    """Drop what carries no meaning for a model: control characters, terminal escape
    sequences, and invisible characters that split words.

    Emoji, bidi marks and joiners in scripts that need them are kept: they are text.
    """
    text = _ANSI_ESCAPE.sub("", text)
    text = _LATIN_JOINER.sub("", _INVISIBLE.sub("", text))
    return "".join(ch for ch in text if ch in _KEEP_CONTROLS or unicodedata.category(ch) != "Cc")


def translate_texts(
    engine: TranslationEngine,
    texts: Sequence[str | None],
    contexts: Sequence[Sequence[str]],
    *,
    target_lang: str,
    max_batch_tokens: int,
    max_batch_size: int,
) -> tuple[list[RowResult], TranslateStats]:
    """One RowResult per input text, in input order."""
    stats = TranslateStats()
    results: list[RowResult | None] = [None] * len(texts)
    rows: dict[int, _Row] = {}
    candidates: list[tuple[int, str]] = []
    for i, text in enumerate(texts):
        if text is None:
            results[i] = RowResult(None, EMPTY, "text is null: nothing to translate")
            continue
        cleaned = clean_text(text)
        if not cleaned.strip():
            results[i] = RowResult(
                text, EMPTY, "text is empty or whitespace-only: nothing to translate"
            )
            continue
        candidates.append((i, cleaned))

    # One tokenizer call for every row: most rows fit, and only those that do not are split.
    counts = engine.count_tokens([c.strip() for _, c in candidates]) if candidates else []
    units: list[_Unit] = []
    for (i, cleaned), count in zip(candidates, counts, strict=True):
        body = cleaned.strip()
        lead = cleaned[: len(cleaned) - len(cleaned.lstrip())]
        trail = cleaned[len(cleaned.rstrip()) :]
        if count <= engine.max_input_tokens:
            pieces = [Piece(body, "")]
            piece_counts = [count]
        else:
            pieces = split_for_model(body, engine.count_tokens, engine.max_input_tokens)
            piece_counts = engine.count_tokens([p.text for p in pieces])
        row = _Row(pieces, lead, trail)
        context = tuple(contexts[i]) if i < len(contexts) else ()
        for k, (piece, n) in enumerate(zip(pieces, piece_counts, strict=True)):
            unit = _Unit(i, k, Segment(piece.text, context if k == 0 else ()), n)
            row.units.append(unit)
            units.append(unit)
        rows[i] = row
        stats.source_tokens += count

    for batch in plan_batches([u.tokens for u in units], max_batch_tokens, max_batch_size):
        _run_batch(engine, [units[j] for j in batch], stats)

    glue = "" if target_lang.split("-")[0] in _UNSPACED_TARGETS else " "
    for i, row in rows.items():
        results[i] = _assemble(row, glue)
    return [r for r in results if r is not None], stats


def _run_batch(engine: TranslationEngine, batch: list[_Unit], stats: TranslateStats) -> None:
    stats.batches += 1
    try:
        outputs = engine.translate_batch([u.segment for u in batch])
        if len(outputs) != len(batch):
            raise RuntimeError(f"engine returned {len(outputs)} outputs for {len(batch)} inputs")
    except Exception as exc:  # noqa: BLE001 - any model failure is isolated to its rows
        stats.batch_failures += 1
        if len(batch) == 1:
            message = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
            batch[0].error = f"model failed on this row: {message}"
            log.warning("row_failed", row=batch[0].row, error=message)
            return
        half = len(batch) // 2
        _run_batch(engine, batch[:half], stats)
        _run_batch(engine, batch[half:], stats)
        return
    for unit, text in zip(batch, outputs, strict=True):
        unit.output = text


def _assemble(row: _Row, glue: str) -> RowResult:
    errors = [u.error for u in row.units if u.error]
    if errors:
        where = f" (piece {next(u.piece for u in row.units if u.error) + 1} of {len(row.units)})"
        return RowResult(None, FAILED, errors[0] + (where if len(row.units) > 1 else ""))
    outputs = [u.output or "" for u in row.units]
    text = row.lead + join_pieces(outputs, row.pieces, glue) + row.trail
    if len(row.units) > 1:
        # Flagged, not failed: the error column says why the row reads as joined pieces.
        note = (
            f"text exceeded the model's input limit; translated in {len(row.units)} pieces "
            "split at sentence/whitespace boundaries and joined"
        )
        return RowResult(text, OK_SPLIT, note)
    return RowResult(text, OK, None)
