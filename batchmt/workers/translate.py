"""Translate a shard's rows: nothing lost, one bad row never takes its batch down.

Per row: clean the text -> split markup into units (format anchoring) -> cut over-long
units into sentences -> match glossary terms per piece -> translate every piece of every
row in length-sorted, token-budgeted batches (constrained where terms matched) -> join
pieces -> restore markup -> check glossary terms in the result.

- null / empty / whitespace-only text: status says so, no model call;
- text over the model's input limit: split into pieces, translated, joined, flagged;
- a batch that raises: retried in halves down to single rows, and only the row that
  still fails records the error.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, TypeVar

import structlog

from batchmt.pipeline.errors import BatchmtError
from batchmt.pipeline.results import RowResult
from batchmt.pipeline.status import (
    EMPTY,
    FAILED,
    GLOSSARY_MISSED,
    INVALID,
    OK,
    OK_SPLIT,
    TRANSLATED,
)
from batchmt.pipeline.text.glossary import Glossary, Term, check_terms
from batchmt.pipeline.text.term_checks import term_fragments
from batchmt.workers.batching import plan_batches
from batchmt.workers.engines.base import Aligner, Segment, Translation, TranslationEngine
from batchmt.workers.formats.plan import FormatOptions, FormatPlan, FormatResult, prepare_formats
from batchmt.workers.formats.restore import restore_many
from batchmt.workers.formats.sn_tags import restore_from_sn, sn_sources
from batchmt.workers.splitting import Piece, TextTooLongError, join_pieces, split_for_model

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
_HAS_WORD = re.compile(r"\w")
# Line breaks inside a plain row, with the blank space around them (kept as they are).
_LINE_BREAKS = re.compile(r"([^\S\r\n]*(?:\r\n|\r|\n)\s*)")
# Target languages written without spaces between sentences.
_UNSPACED_TARGETS = ("zh", "ja", "th", "yue", "bo", "my", "km", "lo")
_MAX_ERROR_CHARS = 500
_T = TypeVar("_T")
# The shard loop's calls to the engine: free decoding (which may defer rows), then for the
# deferred rows the engine's placement step and the constrained search.
_Stage = Literal["free", "place", "constrain"]


@dataclass
class RowInput:
    text: str | None
    context: Sequence[str] = ()
    # The row's effective glossary (job terms plus the row's own); None = no glossary.
    glossary: Glossary | None = None
    # Why the row's own glossary could not be used (the row is then INVALID).
    glossary_error: str | None = None


# The error of a row whose non-empty source came back as an empty translation.
EMPTY_OUTPUT = "the model returned an empty translation of a non-empty source"


class BrokenModelError(BatchmtError, RuntimeError):
    """Every row of a shard that reached the model came back empty: the shard fails (and
    with it the job, naming it) instead of being published as translated."""


def check_not_all_empty(shard_id: str, results: Sequence[RowResult]) -> None:
    """Raise BrokenModelError when no row was translated and some came back empty."""
    empty = sum(1 for r in results if r.status == FAILED and r.error == EMPTY_OUTPUT)
    if empty and not any(r.status in TRANSLATED for r in results):
        raise BrokenModelError(
            f"shard {shard_id}: all {empty} row(s) the model translated came back empty; the "
            "model is broken (NaN weights, a wrong tokenizer or checkpoint?): check "
            "model.name_or_path"
        )


@dataclass
class TranslateStats:
    source_tokens: int = 0
    batches: int = 0
    batch_failures: int = 0
    glossary_terms: int = 0
    glossary_hits: int = 0
    format_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _Unit:
    row: int
    segment: Segment
    tokens: int
    formatted: bool = False  # segment text carries <sn> markup for the formatted prompt
    output: str | None = None
    error: str | None = None
    logprob: float | None = None
    deferred: bool = False  # waits for engine.constrain (see translate_or_defer)
    term_placement: bool = False  # a glossary term could only be written as a fragment


@dataclass
class _Pending:
    """A block waiting for its token count (and, if too long, its split)."""

    row: int
    index: int  # of the block within its row
    block: _Block
    glossary: Glossary | None
    context: Sequence[str]


@dataclass
class _Block:
    """One translatable unit of a row (a block of markup, or the whole plain row)."""

    text: str  # as in the row, surrounding whitespace included
    pieces: list[Piece]
    units: list[_Unit]


@dataclass
class _Row:
    blocks: list[_Block]
    plan: FormatPlan | None
    lead: str  # whitespace around the row, put back around a restored markup row
    trail: str
    # Units sent with their markup as <sn> spans (decoder-only engines with HY-MT's
    # formatted prompt) instead of stripped and re-placed by alignment.
    sn: list[str] | None = None
    # Matched terms of the whole row, an ordered set; Term keeps per-term case sensitivity.
    terms: dict[Term, None] = field(default_factory=dict)


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
    """Plain rows: no glossary, no format anchoring (benchmarks and simple callers)."""
    rows = [RowInput(t, contexts[i] if i < len(contexts) else ()) for i, t in enumerate(texts)]
    return translate_rows(
        engine,
        rows,
        target_lang=target_lang,
        max_batch_tokens=max_batch_tokens,
        max_batch_size=max_batch_size,
        formats_mode="text",
    )


def translate_rows(
    engine: TranslationEngine,
    rows: Sequence[RowInput],
    *,
    target_lang: str,
    max_batch_tokens: int,
    max_batch_size: int,
    formats_mode: str | FormatOptions = "auto",
) -> tuple[list[RowResult], TranslateStats]:
    """One RowResult per input row, in input order."""
    stats = TranslateStats()
    results: list[RowResult | None] = [None] * len(rows)
    prepared: dict[int, _Row] = {}
    pending: list[_Pending] = []
    for i, row in enumerate(rows):
        try:
            early, ready = _prepare_row(engine, row, formats_mode)
        except Exception as exc:  # noqa: BLE001 - one odd row must not cost its shard
            message = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
            log.warning("row_unpreparable", row=i, error=message)
            results[i] = RowResult(None, FAILED, f"could not prepare the row: {message}")
            continue
        if ready is None:
            results[i] = early
            continue
        prepared[i] = ready
        for b, block in enumerate(ready.blocks):
            if _HAS_WORD.search(block.text):
                pending.append(_Pending(i, b, block, row.glossary, row.context))

    # One tokenizer call for every block: most fit, and only those that do not are split.
    counts = engine.count_tokens([p.block.text.strip() for p in pending]) if pending else []
    units: list[_Unit] = []
    refused: set[int] = set()  # rows too long to split within the piece bound
    for waiting, count in zip(pending, counts, strict=True):
        i, block, glossary = waiting.row, waiting.block, waiting.glossary
        if i in refused:
            continue
        body = block.text.strip()
        if count <= engine.max_input_tokens:
            block.pieces, piece_counts = [Piece(body, "")], [count]
        else:
            try:
                block.pieces = split_for_model(body, engine.count_tokens, engine.max_input_tokens)
            except TextTooLongError as exc:
                results[i] = RowResult(None, INVALID, str(exc))
                refused.add(i)
                continue
            piece_counts = engine.count_tokens([p.text for p in block.pieces])
        stats.source_tokens += count
        for k, (piece, n) in enumerate(zip(block.pieces, piece_counts, strict=True)):
            matched = [m.term for m in glossary.match(piece.text)] if glossary else []
            prepared[i].terms.update(dict.fromkeys(matched))
            # A term repeated in the source is one constraint (and one adherence count).
            pairs = dict.fromkeys((t.source, t.target) for t in matched)
            sn = prepared[i].sn
            text = sn[waiting.index] if sn is not None else piece.text
            context = tuple(waiting.context) if k == 0 else ()
            segment = Segment(text, context, tuple(pairs))
            unit = _Unit(i, segment, n, formatted=sn is not None)
            block.units.append(unit)
            units.append(unit)

    for i in refused:
        del prepared[i]
    units = [u for u in units if u.row not in refused]
    # Decoder-only models: a row costs its prompt and generated tokens in the KV cache.
    costs = [u.tokens for u in units]
    if units:
        costs = engine.batch_costs([u.segment for u in units], costs)
    for formatted in (False, True):  # one prompt shape per batch
        group = [j for j, u in enumerate(units) if u.formatted == formatted]
        for batch in _batches(engine, [costs[j] for j in group], max_batch_tokens, max_batch_size):
            _run_batch(engine, [units[group[j]] for j in batch], stats)
    # Rows whose glossary terms the engine's fast path missed, all at once: first the
    # engine's cheaper step (term placement) in one call, then the constrained search, which
    # costs per step, not per row, so few full batches beat many small ones.
    deferred = [j for j, u in enumerate(units) if u.deferred]
    if deferred:
        _run_batch(engine, [units[j] for j in deferred], stats, "place")
    deferred = [j for j, u in enumerate(units) if u.deferred]
    for batch in plan_batches([costs[j] for j in deferred], max_batch_tokens, max_batch_size):
        _run_batch(engine, [units[deferred[j]] for j in batch], stats, "constrain")

    glue = "" if target_lang.split("-")[0] in _UNSPACED_TARGETS else " "
    aligner = engine.aligner() if any(r.plan is not None for r in prepared.values()) else None
    _finish_rows(engine, prepared, results, glue, aligner, max_batch_tokens, max_batch_size, stats)
    return [r for r in results if r is not None], stats


def _batches(
    engine: TranslationEngine, costs: list[int], max_batch_tokens: int, max_batch_size: int
) -> list[list[int]]:
    """Token-budget batches, or everything at once for an engine whose own scheduler
    batches (vLLM: its continuous batching beats any split made here)."""
    if engine.schedules_batches:
        return [list(range(len(costs)))] if costs else []
    return [list(b) for b in plan_batches(costs, max_batch_tokens, max_batch_size)]


def _prepare_row(
    engine: TranslationEngine, row: RowInput, formats_mode: str | FormatOptions
) -> tuple[RowResult | None, _Row | None]:
    """(result, None) for a row that never reaches the model, else (None, its blocks)."""
    cleaned = clean_text(row.text) if row.text is not None else None
    early = _early_result(row, cleaned)
    if early is not None or cleaned is None:
        return early, None
    body = cleaned.strip()
    lead, trail = cleaned[: cleaned.find(body)], cleaned[cleaned.find(body) + len(body) :]
    plan = None
    if formats_mode != "text":
        plan = prepare_formats(body, formats_mode)
        if not _anchoring_needed(plan):
            plan = None  # prose (numbers at most): translated as it is
    texts = plan.units if plan is not None else _lines(cleaned)
    prepared = _Row([_Block(text, [], []) for text in texts], plan, lead, trail)
    # Whole units only: a unit cut into sentences would cut its <sn> spans too.
    if (
        plan is not None
        and engine.translates_marked
        and plan.units
        and max(engine.count_tokens(plan.units)) <= engine.max_input_tokens
    ):
        prepared.sn = sn_sources(plan)
    return None, prepared


def _lines(text: str) -> list[str]:
    """A plain row as blocks: each line translated alone, the line breaks between them kept
    byte for byte (a model writes a `\r\n` inside its input as a space, or not at all)."""
    return [part for part in _LINE_BREAKS.split(text) if part]


def _anchoring_needed(plan: FormatPlan) -> bool:
    """Markup or protected spans beyond plain numbers: a prose sentence keeps its digits in
    the text (models copy them well), rather than losing them to re-insertion."""
    return any(
        t.kind != "text" and not (t.kind == "verbatim" and t.label == "number") for t in plan.tokens
    )


def _early_result(row: RowInput, cleaned: str | None) -> RowResult | None:
    """Rows that never reach the model, with the reason."""
    if row.glossary_error:
        return RowResult(None, INVALID, f"row glossary unusable: {row.glossary_error}")
    if row.text is None:
        return RowResult(None, EMPTY, "text is null: nothing to translate")
    if cleaned is None or not cleaned.strip():
        return RowResult(row.text, EMPTY, "text is empty or whitespace-only: nothing to translate")
    return None


def _run_batch(
    engine: TranslationEngine, batch: list[_Unit], stats: TranslateStats, stage: _Stage = "free"
) -> None:
    """Translate the batch (`place`: the deferred rows' cheaper step, `place_deferred`;
    `constrain`: their constrained search); a failure is halved down to the row that causes
    it, which alone fails (in `place`, it stays deferred instead)."""
    stats.batches += stage != "place"  # a placement call is no decoding batch of its own
    try:
        segments = [u.segment for u in batch]
        if stage == "constrain":
            translations = engine.constrain(segments)
        elif stage == "place":
            drafts = [Translation(u.output or "", logprob=u.logprob, deferred=True) for u in batch]
            translations = engine.place_deferred(segments, drafts)
        else:
            translations = engine.translate_or_defer(segments, marked=batch[0].formatted)
        outputs = [t.text for t in translations]
        if len(outputs) != len(batch):
            raise RuntimeError(f"engine returned {len(outputs)} outputs for {len(batch)} inputs")
    except Exception as exc:  # noqa: BLE001 - any model failure is isolated to its rows
        stats.batch_failures += 1
        if len(batch) == 1:
            message = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
            log.warning("row_failed", row=batch[0].row, stage=stage, error=message)
            # A row the placement step fails on is still deferred: the search decodes it.
            if stage != "place":
                batch[0].error = f"model failed on this row: {message}"
            return
        half = len(batch) // 2
        _run_batch(engine, batch[:half], stats, stage)
        _run_batch(engine, batch[half:], stats, stage)
        return
    for unit, translation in zip(batch, translations, strict=True):
        unit.output, unit.logprob = translation.text, translation.logprob
        unit.deferred = translation.deferred and stage != "constrain"
        unit.term_placement = translation.term_placement


def _block_text(block: _Block, glue: str) -> str:
    """The block's translation with its own surrounding whitespace kept."""
    if not block.units:  # nothing translatable (punctuation, spaces): kept as it is
        return block.text
    body = join_pieces([u.output or "" for u in block.units], block.pieces, glue)
    stripped = block.text.strip()
    lead = block.text[: block.text.find(stripped)] if stripped else ""
    return lead + body + block.text[len(lead) + len(stripped) :]


def _finish_rows(
    engine: TranslationEngine,
    prepared: dict[int, _Row],
    results: list[RowResult | None],
    glue: str,
    aligner: Aligner | None,
    max_batch_tokens: int,
    max_batch_size: int,
    stats: TranslateStats,
) -> None:
    ok_rows: dict[int, list[str]] = {}
    for i, row in prepared.items():
        errors = [u.error for b in row.blocks for u in b.units if u.error]
        if errors:
            results[i] = RowResult(None, FAILED, errors[0])
        else:
            ok_rows[i] = [_block_text(b, glue) for b in row.blocks]

    def fallback_runs(texts: list[str]) -> list[str]:
        return _translate_plain(engine, texts, max_batch_tokens, max_batch_size, stats)

    outcomes: dict[int, FormatResult] = {}
    aligned = [i for i in ok_rows if prepared[i].plan is not None and prepared[i].sn is None]
    if aligned:  # one batched alignment pass for every row placed by alignment
        plans = [plan for i in aligned if (plan := prepared[i].plan) is not None]
        try:
            restored = restore_many(plans, [ok_rows[i] for i in aligned], aligner, fallback_runs)
            outcomes.update(zip(aligned, restored, strict=True))
        except Exception:  # noqa: BLE001 - then row by row, so only the row that breaks fails
            for i, plan in zip(aligned, plans, strict=True):
                alone = partial(restore_many, [plan], [ok_rows[i]], aligner, fallback_runs)
                restored_one = _isolated(i, results, alone)
                if restored_one is not None:
                    outcomes[i] = restored_one[0]
    for i in ok_rows:
        row = prepared[i]
        if row.sn is not None and row.plan is not None and results[i] is None:
            # Raw model outputs, <sn> tags included, one per unit (not the joined block).
            outputs = [(b.units[0].output or "") if b.units else b.text for b in row.blocks]
            restore = partial(restore_from_sn, row.plan, outputs, fallback_runs)
            found = _isolated(i, results, restore)
            if found is not None:
                outcomes[i] = found
    for outcome in outcomes.values():
        stats.format_counts[outcome.status] = stats.format_counts.get(outcome.status, 0) + 1

    for i, blocks in ok_rows.items():
        if results[i] is not None:
            continue  # restoring its markup failed: the row's result says so
        row = prepared[i]
        if i in outcomes:
            found = outcomes[i]
            text = row.lead + found.text + row.trail
            finish = partial(_row_result, row, text, found.status, found.detail, stats)
        else:
            finish = partial(_row_result, row, "".join(blocks), None, None, stats)
        result = _isolated(i, results, finish)
        if result is not None:
            results[i] = result


def _isolated(row: int, results: list[RowResult | None], step: Callable[[], _T]) -> _T | None:
    """One row's finishing step; an error fails that row alone (its result says why)."""
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - one odd row must not cost its shard
        message = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
        log.warning("row_unfinishable", row=row, error=message)
        results[row] = RowResult(None, FAILED, f"could not finish the row: {message}")
        return None


def _row_result(
    row: _Row,
    text: str,
    format_status: str | None,
    format_detail: str | None,
    stats: TranslateStats,
) -> RowResult:
    hits, missed = check_terms(text, list(row.terms)) if row.terms else ([], [])
    # The engine's flag, or the text itself (any engine): a term written as a fragment.
    source = " ".join(b.text.strip() for b in row.blocks)
    fragment = any(u.term_placement for b in row.blocks for u in b.units) or bool(
        row.terms and term_fragments(source, text, [t.target for t in row.terms])
    )
    stats.glossary_terms += len(row.terms)
    stats.glossary_hits += len(hits)
    pieces = sum(len(b.units) for b in row.blocks)
    split = any(len(b.units) > 1 for b in row.blocks)
    if missed:
        names = ", ".join(f"{s} -> {t}" for s, t in missed)
        status, error = GLOSSARY_MISSED, f"glossary terms not in the translation: {names}"
    elif split:
        # Flagged, not failed: the error column says why the row reads as joined pieces.
        status = OK_SPLIT
        error = (
            f"text exceeded the model's input limit; translated in {pieces} pieces "
            "split at sentence/whitespace boundaries and joined"
        )
    else:
        status, error = OK, None
    if not text.strip():
        # The source had text (empty rows never reach the model): nothing back is a broken
        # model or a broken decode, never a translation (a NaN-weight model returns "").
        return RowResult(None, FAILED, EMPTY_OUTPUT)
    return RowResult(
        text,
        status,
        error,
        glossary_hits=[t for _, t in hits] if row.terms else None,
        glossary_missed=[t for _, t in missed] if row.terms else None,
        format_status=format_status,
        format_detail=format_detail,
        logprob=_least_confident([u.logprob for b in row.blocks for u in b.units]),
        term_placement=fragment,
    )


def _least_confident(logprobs: list[float | None]) -> float | None:
    """One bad piece makes a bad row; None when any piece has no score (then QE scores the
    whole row by forced decoding instead)."""
    known = [lp for lp in logprobs if lp is not None]
    return min(known) if known and len(known) == len(logprobs) else None


def _translate_plain(
    engine: TranslationEngine,
    texts: list[str],
    max_batch_tokens: int,
    max_batch_size: int,
    stats: TranslateStats,
) -> list[str]:
    """Translate loose text runs (format fallback); a run that fails stays untranslated."""
    units = [_Unit(-1, Segment(t), n) for t, n in zip(texts, engine.count_tokens(texts))]
    for batch in _batches(engine, [u.tokens for u in units], max_batch_tokens, max_batch_size):
        _run_batch(engine, [units[j] for j in batch], stats)
    return [u.output if u.output is not None else u.segment.text for u in units]
