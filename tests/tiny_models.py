"""Tiny real models for tests: real architectures and real SentencePiece tokenizers,
random weights, built in a temp folder in about a second. No hub, no bundled weights."""

from __future__ import annotations

import json
import random
from pathlib import Path

import sentencepiece as spm
import torch

WORDS = (
    "a man woman dog cat child group people street park water ball red blue green small big "
    "is are walking running playing sitting standing with in on at the of and two three "
    "ein eine mann frau hund katze kind gruppe leute strasse park wasser ball rot blau klein "
    "ist sind geht läuft spielt sitzt steht mit im auf am der die das und zwei drei"
).split()


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "." for _ in range(n)]


def _train_spm(out_dir: Path, vocab_size: int) -> Path:
    prefix = out_dir / "spm"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="unigram",
        eos_id=0,
        unk_id=1,
        bos_id=-1,
        pad_id=-1,
        eos_piece="</s>",
        unk_piece="<unk>",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def build_tiny_marian(out_dir: Path, *, max_positions: int = 64, seed: int = 0) -> Path:
    """A random-weight MarianMTModel with opus-mt id conventions (</s>=0, <unk>=1, pad=last)."""
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    model_file = _train_spm(out_dir, 120)
    processor = spm.SentencePieceProcessor(model_file=str(model_file))
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    vocab["<pad>"] = len(vocab)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    for name in ("source.spm", "target.spm"):
        (out_dir / name).write_bytes(model_file.read_bytes())
    tokenizer = MarianTokenizer(
        source_spm=str(out_dir / "source.spm"),
        target_spm=str(out_dir / "target.spm"),
        vocab=str(out_dir / "vocab.json"),
        model_max_length=max_positions,
    )
    tokenizer.save_pretrained(str(out_dir))
    pad = len(vocab) - 1
    config = MarianConfig(
        vocab_size=len(vocab),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=max_positions,
        pad_token_id=pad,
        eos_token_id=0,
        decoder_start_token_id=pad,
        forced_eos_token_id=0,
    )
    torch.manual_seed(seed)
    MarianMTModel(config).save_pretrained(str(out_dir))
    return out_dir


def build_tiny_m2m100(out_dir: Path, *, seed: int = 0) -> Path:
    """A random-weight M2M100 with its real tokenizer (language tokens like __de__)."""
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    model_file = _train_spm(out_dir, 120)
    processor = spm.SentencePieceProcessor(model_file=str(model_file))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for i in range(processor.get_piece_size()):
        vocab.setdefault(processor.id_to_piece(i), len(vocab))
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "sentencepiece.bpe.model").write_bytes(model_file.read_bytes())
    tokenizer = M2M100Tokenizer(
        vocab_file=str(out_dir / "vocab.json"),
        spm_file=str(out_dir / "sentencepiece.bpe.model"),
        src_lang="en",
        tgt_lang="de",
    )
    tokenizer.save_pretrained(str(out_dir))
    # Language tokens sit after the SentencePiece pieces, then 8 "madeup" words.
    lang_ids = [tokenizer.get_lang_id(code) for code in tokenizer.lang_code_to_id]
    config = M2M100Config(
        vocab_size=max(lang_ids) + 1 + 8,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    torch.manual_seed(seed)
    M2M100ForConditionalGeneration(config).save_pretrained(str(out_dir))
    return out_dir
