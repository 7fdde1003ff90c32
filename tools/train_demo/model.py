"""The opus-mt style Marian model: configuration, generation defaults, size, saving."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from tools.train_demo.common import log

MAX_MODEL_BYTES = 40 * 1024 * 1024


def build_model(args: argparse.Namespace, vocab_size: int) -> Any:
    """Opus-mt style Marian: post-norm, swish, sinusoidal positions, tied embeddings."""
    from transformers import MarianConfig, MarianMTModel

    pad = vocab_size - 1
    config = MarianConfig(
        vocab_size=vocab_size,
        decoder_vocab_size=vocab_size,
        d_model=args.d_model,
        encoder_layers=args.layers,
        decoder_layers=args.layers,
        encoder_attention_heads=args.heads,
        decoder_attention_heads=args.heads,
        encoder_ffn_dim=args.ffn,
        decoder_ffn_dim=args.ffn,
        max_position_embeddings=args.max_positions,
        dropout=args.dropout,
        attention_dropout=args.attention_dropout,
        activation_dropout=0.0,
        activation_function="swish",
        scale_embedding=True,
        static_position_embeddings=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        pad_token_id=pad,
        eos_token_id=0,
        decoder_start_token_id=pad,
        forced_eos_token_id=0,
    )
    torch.manual_seed(args.seed)
    model = MarianMTModel(config)
    set_generation_defaults(model, num_beams=4)
    return model


def set_generation_defaults(model: Any, num_beams: int) -> None:
    gen = model.generation_config
    pad = model.config.pad_token_id
    gen.decoder_start_token_id = pad
    gen.pad_token_id = pad
    gen.eos_token_id = 0
    gen.forced_eos_token_id = 0
    gen.bad_words_ids = [[pad]]  # opus-mt convention: never emit <pad>
    gen.num_beams = num_beams
    gen.max_length = model.config.max_position_embeddings


def count_params(model: torch.nn.Module) -> int:
    # Tied weights are counted once: parameters() already deduplicates shared tensors.
    return sum(p.numel() for p in model.parameters())


def save_model(model: Any, tokenizer: Any, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu").float().save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    # transformers 5 folds this into tokenizer_config.json; older readers (and CTranslate2's
    # converter on transformers 4) still look for it.
    specials = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    if size > MAX_MODEL_BYTES:
        log(f"warning: model dir is {size / 2**20:.1f} MiB, above the 40 MiB limit")
    return size
