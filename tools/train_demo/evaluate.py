"""Decoding and scoring: batched translation, sacrebleu scores, the saved model's test sets."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sacrebleu
import torch

from tools.train_demo.common import log
from tools.train_demo.data import Splits
from tools.train_demo.vocabulary import check_tokenizer


@torch.inference_mode()
def translate(
    model: Any,
    tokenizer: Any,
    sentences: Sequence[str],
    *,
    num_beams: int,
    batch_size: int,
    device: torch.device,
    max_positions: int | None = None,
) -> list[str]:
    """Batched ``generate`` over length-sorted batches; results come back in input order.

    Output length is bounded by input length (2x + 10): a degenerate row otherwise keeps the
    whole batch decoding up to the position limit.
    """
    limit = max_positions or model.config.max_position_embeddings
    encoded = tokenizer(list(sentences), truncation=True, max_length=limit)["input_ids"]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    pad = tokenizer.pad_token_id
    results: list[str] = [""] * len(encoded)
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        longest = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), longest), pad, dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
        ids = ids.to(device)
        out = model.generate(
            input_ids=ids,
            attention_mask=ids.ne(pad),
            num_beams=num_beams,
            do_sample=False,
            max_length=min(limit, 2 * longest + 10),  # counts the start token too
        )
        texts = tokenizer.batch_decode(out, skip_special_tokens=True)
        for i, text in zip(idx, texts, strict=True):
            results[i] = text
    return results


def score(hyps: list[str], refs: list[str]) -> dict[str, Any]:
    """sacrebleu defaults (BLEU 13a, chrF), cased, on detokenized text, with signatures."""
    bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
    return {
        "bleu": round(bleu.corpus_score(hyps, [refs]).score, 2),
        "chrf": round(chrf.corpus_score(hyps, [refs]).score, 2),
        "n": len(hyps),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def evaluate_saved(
    out: Path, splits: Splits, device: torch.device, batch_size: int, limit: int | None
) -> dict[str, Any]:
    """Reload from disk as users will, then score every test set with beam 4."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForSeq2SeqLM.from_pretrained(str(out)).to(device)
    check_tokenizer(tokenizer, splits.val[0][:20])
    results: dict[str, Any] = {}
    for name, (src, ref) in splits.tests.items():
        src, ref = src[:limit], ref[:limit]
        t0 = time.monotonic()
        hyps = translate(model, tokenizer, src, num_beams=4, batch_size=batch_size, device=device)
        results[name] = score(hyps, ref) | {"seconds": round(time.monotonic() - t0, 1)}
        log(f"{name}: BLEU {results[name]['bleu']:.2f} chrF {results[name]['chrf']:.2f}")
        for s, h in list(zip(src, hyps, strict=True))[:3]:
            log(f"  {s!r} -> {h!r}")
    return results


def print_summary(report: dict[str, Any]) -> None:
    print(
        f"\n== demo-{report['pair']}: {report['params'] / 1e6:.2f}M params, "
        f"{report['model_dir_bytes'] / 2**20:.1f} MiB, {report['steps']} steps, "
        f"{report['train_seconds'] / 60:.1f} min on {report['device']}"
    )
    print(f"   val BLEU (greedy) {report['val_bleu_greedy']} [{report['selected_checkpoint']}]")
    for name, res in report["tests"].items():
        print(
            f"   {name:<20} BLEU {res['bleu']:6.2f}  chrF {res['chrf']:6.2f}  "
            f"(n={res['n']}, beam 4)"
        )
