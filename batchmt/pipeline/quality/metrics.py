"""BLEU and chrF as summable statistics: the one place batchmt calls sacrebleu.

Quality files (samples.py, and `batchmt score`'s shards) store each shard's sufficient
statistics, and the job's scores come from their sums, exactly as if every scored row had
been scored at once. BLEU's statistics are `[sys_len, ref_len, *matches, *totals]`, read off
`BLEU.corpus_score` and scored with `BLEU.compute_bleu` (sacrebleu's public API). chrF
has no public statistics: `_chrf_statistics`/`_chrf_from` are the one use of sacrebleu's
private names, kept to those two lines so a sacrebleu upgrade breaks here, loudly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def metrics(target_lang: str | None) -> tuple[Any, Any]:
    """sacrebleu's BLEU and chrF as every quality file is configured (and signed) with."""
    from sacrebleu.metrics import BLEU, CHRF

    # force=True: our hypotheses are detokenised model output; silence sacrebleu's warning.
    bleu, chrf = BLEU(trg_lang=target_lang or "", force=True), CHRF()
    # One reference per row, always; set so signatures exist before any scoring.
    bleu.num_refs = chrf.num_refs = 1
    return bleu, chrf


def signature(target_lang: str | None) -> dict[str, str]:
    import sacrebleu

    bleu, chrf = metrics(target_lang)
    return {
        "sacrebleu": sacrebleu.__version__,
        "bleu": bleu.get_signature().format(),
        "chrf": chrf.get_signature().format(),
    }


def _bleu_from(bleu: Any, stats: Sequence[float]) -> float:
    order = bleu.max_ngram_order
    return float(
        bleu.compute_bleu(
            [int(x) for x in stats[2 : 2 + order]],
            [int(x) for x in stats[2 + order : 2 + 2 * order]],
            int(stats[0]),
            int(stats[1]),
            smooth_method=bleu.smooth_method,
            smooth_value=bleu.smooth_value,
            effective_order=bleu.effective_order,
            max_ngram_order=order,
        ).score
    )


def _chrf_statistics(chrf: Any, hyps: list[str], refs: list[str]) -> list[float]:
    return _sums(chrf._extract_corpus_statistics(hyps, [refs]))  # no public statistics


def _chrf_from(chrf: Any, stats: list[float]) -> float:
    return float(chrf._compute_score_from_stats(stats).score)  # no public statistics


def _sums(rows: list[list[Any]]) -> list[float]:
    return [sum(column) for column in zip(*rows, strict=True)] if rows else []


def reference_scores(
    hyps: list[str], refs: list[str], target_lang: str | None
) -> dict[str, Any] | None:
    """The quality file's `reference` part: segments, both statistics and both scores."""
    if not hyps:
        return None
    bleu, chrf = metrics(target_lang)
    score = bleu.corpus_score(hyps, [refs])
    bleu_stats = [score.sys_len, score.ref_len, *score.counts, *score.totals]
    chrf_stats = _chrf_statistics(chrf, hyps, refs)
    return {
        "segments": len(hyps),
        "bleu_stats": bleu_stats,
        "chrf_stats": chrf_stats,
        "bleu": _bleu_from(bleu, bleu_stats),
        "chrf": _chrf_from(chrf, chrf_stats),
    }


def merged_scores(parts: Sequence[dict[str, Any]], target_lang: str | None) -> dict[str, Any]:
    """BLEU, chrF and segments over many `reference` parts, from their summed statistics."""
    bleu, chrf = metrics(target_lang)
    bleu_stats = _sums([list(part["bleu_stats"]) for part in parts])
    chrf_stats = _sums([list(part["chrf_stats"]) for part in parts])
    return {
        "bleu": _bleu_from(bleu, bleu_stats),
        "chrf": _chrf_from(chrf, chrf_stats),
        "reference_segments": sum(part["segments"] for part in parts),
    }
