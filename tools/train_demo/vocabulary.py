"""The shared SentencePiece vocabulary (opus-mt ids), encoded training pairs, token batches."""

from __future__ import annotations

import argparse
import json
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
import torch

from tools.train_demo.common import log
from tools.train_demo.data import Pairs, Splits


def train_tokenizer(
    train: Pairs, out_dir: Path, vocab_size: int, coverage: float, seed: int, threads: int
) -> Any:
    """Train one shared SentencePiece model and write MarianTokenizer files to ``out_dir``.

    Ids follow opus-mt: the spm model itself has ``</s>`` = 0 and ``<unk>`` = 1; ``<pad>``
    is appended after the last piece so that pad = vocab_size - 1 = decoder start.
    """
    from transformers import MarianTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "spm"
    lines = [s for s in train[0] + train[1] if s.strip()]
    random.Random(seed).shuffle(lines)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(prefix),
        vocab_size=vocab_size - 1,  # the last id is <pad>, added below
        model_type="unigram",
        character_coverage=coverage,
        eos_id=0,
        unk_id=1,
        bos_id=-1,
        pad_id=-1,
        eos_piece="</s>",
        unk_piece="<unk>",
        hard_vocab_limit=False,  # tiny smoke corpora cannot fill a large vocabulary
        num_threads=threads,
        minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    vocab["<pad>"] = len(vocab)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1))
    for name in ("source.spm", "target.spm"):
        (out_dir / name).write_bytes(Path(f"{prefix}.model").read_bytes())
    tokenizer = MarianTokenizer(
        source_spm=str(out_dir / "source.spm"),
        target_spm=str(out_dir / "target.spm"),
        vocab=str(out_dir / "vocab.json"),
        model_max_length=512,
    )
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def check_tokenizer(tokenizer: Any, samples: Sequence[str]) -> None:
    """Fail early if the id conventions or the encode/decode round trip are broken."""
    vocab_size = len(tokenizer)
    expected = {"eos": 0, "unk": 1, "pad": vocab_size - 1}
    actual = {
        "eos": tokenizer.eos_token_id,
        "unk": tokenizer.unk_token_id,
        "pad": tokenizer.pad_token_id,
    }
    if actual != expected:
        raise RuntimeError(f"tokenizer ids {actual} do not follow opus-mt conventions {expected}")
    changed = []
    for text in samples:
        ids = tokenizer(text)["input_ids"]
        if ids[-1] != 0:
            raise RuntimeError(f"encoding of {text!r} does not end with </s>: {ids}")
        back = tokenizer.decode(ids, skip_special_tokens=True)
        # SentencePiece applies NFKC (e.g. full-width "，" -> ","), at runtime as well.
        expected = unicodedata.normalize("NFKC", " ".join(text.split()))
        if tokenizer.unk_token_id not in ids and back != expected:
            changed.append((text, back))
    if len(changed) > 0.02 * max(len(samples), 1):
        raise RuntimeError(f"round trip changed {len(changed)} of {len(samples)}: {changed[:3]}")
    for text, back in changed:
        log(f"note: round trip normalised {text!r} into {back!r}")


@dataclass
class Encoded:
    """A split as padded id tensors; rows are sentence pairs, ``*_len`` include </s>."""

    src: torch.Tensor
    tgt: torch.Tensor
    src_len: torch.Tensor
    tgt_len: torch.Tensor


def encode_pairs(tokenizer: Any, pairs: Pairs, max_len: int) -> Encoded:
    """Tokenise once with the runtime tokenizer itself, so training ids == inference ids."""
    src_ids = tokenizer(pairs[0])["input_ids"]
    tgt_ids = tokenizer(text_target=pairs[1])["input_ids"]
    keep = [
        i
        for i, (s, t) in enumerate(zip(src_ids, tgt_ids, strict=True))
        if 1 < len(s) <= max_len and 1 < len(t) <= max_len
    ]
    pad = tokenizer.pad_token_id

    def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        out = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)
        for j, r in enumerate(rows):
            out[j, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out, lengths

    src, src_len = padded([src_ids[i] for i in keep])
    tgt, tgt_len = padded([tgt_ids[i] for i in keep])
    return Encoded(src, tgt, src_len, tgt_len)


def token_batches(enc: Encoded, max_tokens: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Length-bucketed batches of at most ``max_tokens`` padded tokens, in shuffled order.

    Sorting by length with a little noise keeps padding low while varying batch contents
    between epochs.
    """
    lengths = torch.maximum(enc.src_len, enc.tgt_len + 1).numpy()
    noisy = lengths + rng.uniform(0, 1.5, size=len(lengths))
    order = np.argsort(noisy, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        end = start
        longest = 0
        while end < len(order):
            longest = max(longest, int(lengths[order[end]]))
            if (end - start + 1) * longest > max_tokens and end > start:
                break
            end += 1
        batches.append(order[start:end])
        start = end
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def prepare_tokenizer(args: argparse.Namespace, splits: Splits) -> Any:
    from transformers import AutoTokenizer

    tok_dir = Path(args.work_dir) / "tokenizer"
    if args.resume and (tok_dir / "vocab.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    else:
        tokenizer = train_tokenizer(
            splits.train, tok_dir, args.vocab_size, args.coverage, args.seed, args.threads
        )
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))  # as users will load it
    check_tokenizer(tokenizer, splits.val[0][:50] + splits.val[1][:50])
    log(f"tokenizer: {len(tokenizer)} ids (</s>=0, <unk>=1, <pad>={tokenizer.pad_token_id})")
    return tokenizer
