"""Word alignment from an encoder-decoder model's cross-attention.

Format anchoring needs to know which target words translate which source words, so a tag
that wrapped "dog" can wrap "Hund". One teacher-forced forward pass over (source,
translation) pairs returns the decoder's cross-attention; averaging a few upper layers and
all heads gives a usable soft alignment at a fraction of the cost of decoding (no beam, no
steps). Words are whitespace-delimited (`str.split()`), the unit `formats/anchors.py`
works in; subword pieces are folded into the words they belong to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from batchmt.workers.engines.base import Alignment

# SentencePiece marks a piece that starts a new whitespace-delimited word with U+2581.
_SP_WORD_START = "\u2581"


def _piece_words(pieces: Sequence[str], n_words: int) -> list[int]:
    """Word index of each SentencePiece piece; proportional when the pieces disagree with
    whitespace splitting (normalisation can merge or split words)."""
    index, words = -1, []
    for k, piece in enumerate(pieces):
        if piece.startswith(_SP_WORD_START) or k == 0:
            index += 1
        words.append(index)
    if index + 1 == n_words or not pieces:
        return words
    return [min(n_words - 1, k * n_words // len(pieces)) for k in range(len(pieces))]


def _content(tokenizer: Any, ids: list[int]) -> list[int]:
    """Positions of real text pieces: special tokens (eos, pad, language codes) carry no
    alignment and would soak up attention mass."""
    special = set(tokenizer.all_special_ids)
    return [k for k, i in enumerate(ids) if i not in special]


def _word_matrix(
    attention: torch.Tensor,
    tokenizer: Any,
    src_ids: list[int],
    tgt_ids: list[int],
    n_src: int,
    n_tgt: int,
) -> torch.Tensor:
    """Fold a (target pieces x source pieces) attention map into (target words x source
    words): mean over a target word's pieces, sum over a source word's pieces."""
    src_pos, tgt_pos = _content(tokenizer, src_ids), _content(tokenizer, tgt_ids)
    src_words = _piece_words(tokenizer.convert_ids_to_tokens([src_ids[k] for k in src_pos]), n_src)
    tgt_words = _piece_words(tokenizer.convert_ids_to_tokens([tgt_ids[k] for k in tgt_pos]), n_tgt)
    sub = attention[tgt_pos][:, src_pos]
    by_src = torch.zeros(sub.shape[0], n_src).index_add_(1, torch.tensor(src_words), sub)
    out = torch.zeros(n_tgt, n_src).index_add_(0, torch.tensor(tgt_words), by_src)
    counts = torch.bincount(torch.tensor(tgt_words), minlength=n_tgt).clamp(min=1)
    return out / counts[:, None]


def _links(matrix: torch.Tensor) -> Alignment:
    return Alignment(tuple(matrix.argmax(dim=1).tolist()), tuple(matrix.argmax(dim=0).tolist()))


@torch.inference_mode()
def align(
    model: Any,
    tokenizer: Any,
    sources: Sequence[str],
    targets: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
) -> list[Alignment]:
    """Word alignment for each (source, target) pair, in input order.

    `layers`: decoder layers whose cross-attention is averaged; default all but the first
    (lower layers attend to position, not meaning). Works for Marian and M2M100/NLLB, whose
    tokenizers take `text_target`; multilingual tokenizers must already have src_lang set.
    """
    if len(sources) != len(targets):
        raise ValueError(
            f"align got {len(sources)} sources and {len(targets)} targets; pass one target "
            "per source"
        )
    device = next(model.parameters()).device
    # Cross-attention weights are only returned by the eager implementation; switch for
    # this pass and restore, so generation keeps its faster kernel.
    previous = getattr(model.config, "_attn_implementation", None)
    if previous not in (None, "eager"):
        model.set_attn_implementation("eager")
    # Length-sorted batches waste less on padding; results go back in input order.
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]) + len(targets[i]))
    by_index: dict[int, Alignment] = {}
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            src = [sources[i] for i in chunk]
            tgt = [targets[i] for i in chunk]
            found = _align_batch(model, tokenizer, src, tgt, layers, device)
            by_index.update(zip(chunk, found))
    finally:
        if previous not in (None, "eager"):
            model.set_attn_implementation(previous)
    return [by_index[i] for i in range(len(sources))]


def _align_batch(
    model: Any,
    tokenizer: Any,
    sources: list[str],
    targets: list[str],
    layers: Sequence[int] | None,
    device: torch.device,
) -> list[Alignment]:
    enc = tokenizer(sources, text_target=targets, return_tensors="pt", padding=True)
    labels = enc.pop("labels")
    inputs = {k: v.to(device) for k, v in enc.items()}
    # Teacher forcing: the decoder reads the translation shifted right, so position t's
    # attention is the one used to produce target piece t.
    start_id = model.config.decoder_start_token_id
    decoder_ids = torch.cat([torch.full_like(labels[:, :1], start_id), labels[:, :-1]], dim=1)
    # The base model (no LM head) has the attention and skips the vocabulary projection.
    base = getattr(model, "model", model)
    output = base(**inputs, decoder_input_ids=decoder_ids.to(device), output_attentions=True)
    cross = output.cross_attentions
    chosen = list(layers) if layers is not None else list(range(1, len(cross))) or [0]
    attention = torch.stack([cross[i] for i in chosen]).mean(dim=(0, 2)).float().cpu()
    result = []
    for row, (source, target) in enumerate(zip(sources, targets)):
        n_src, n_tgt = len(source.split()), len(target.split())
        if n_src == 0 or n_tgt == 0:
            result.append(Alignment((0,) * n_tgt, (0,) * n_src))
            continue
        matrix = _word_matrix(
            attention[row],
            tokenizer,
            enc["input_ids"][row].tolist(),
            labels[row].tolist(),
            n_src,
            n_tgt,
        )
        result.append(_links(matrix))
    return result
