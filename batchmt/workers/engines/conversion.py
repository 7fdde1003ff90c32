"""Hugging Face checkpoint -> CTranslate2 model folder, once per node and compute type.

A replica converts into a local cache keyed by the checkpoint's content and the compute
type, under a file lock: several replicas starting on one node convert once, and a
checkpoint updated in place (same path, new weights) is converted again instead of served
stale. An already converted CTranslate2 folder is used as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from filelock import FileLock

from batchmt.pipeline.spec import ModelSpec
from batchmt.workers.engines.base import EngineLoadError
from batchmt.workers.engines.checkpoints import cache_root

#: Model types whose converted model this engine drives like the transformers one
#: (tokenizer, language codes as target prefix). The converter knows more (BART, T5, ...),
#: but our language setup and prompts are written for these.
CT2_FAMILIES = frozenset({"marian", "m2m_100"})

# Our own notes beside CTranslate2's files: where the model came from, its input limit.
META_FILE = "batchmt_conversion.json"
_DONE = ".complete"
# Bumped when what we write changes (the alignment heads below, the metadata, Marian's
# vocabulary and decoder start in 3), so an old cache entry is never read with new
# expectations: the version is part of the cache key.
_FORMAT_VERSION = 3
# The logit bias that keeps Marian from writing its <pad> token (transformers' generate bans
# it too: `bad_words_ids`, formerly `adjust_logits_during_generation`). Finite, so float16
# and bfloat16 hold it; logits are tens at most, so its probability is exactly 0.
_BANNED_LOGIT = -1e4
# Files that are weights or the model config: everything else (tokenizer, vocabularies,
# generation config) is copied so the converted folder tokenizes on its own. CTranslate2
# writes its own config.json, so the Hugging Face one must not be copied over it.
_NOT_COPIED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ot", ".gguf")
_NOT_COPIED_NAMES = {"config.json", "README.md", ".gitattributes"}
# Hashing every byte of a multi-GB checkpoint on each replica start costs more than it
# protects: files above this size are keyed by their size and three sampled blocks.
_FULL_HASH_LIMIT = 256 * 2**20
_SAMPLE_BLOCK = 4 * 2**20


def import_ctranslate2() -> Any:
    """The ctranslate2 module, or an error that says which package to install."""
    try:
        import ctranslate2
    except ImportError as exc:
        raise EngineLoadError(
            "model.backend=ctranslate2 needs the `ctranslate2` package (a batchmt dependency): "
            f"pip install 'ctranslate2>=4.5' ({exc}); or set model.backend=transformers"
        ) from exc
    return ctranslate2


def is_ct2_folder(path: str) -> bool:
    """A converted CTranslate2 model: its weights are one `model.bin` (Hugging Face names
    theirs `pytorch_model.bin` or `*.safetensors`)."""
    folder = Path(path)
    return (folder / "model.bin").is_file() and not any(folder.glob("*.safetensors"))


def compute_type(model: ModelSpec, device_type: str, checkpoint_dtype: str | None) -> str:
    """CTranslate2's compute type for `model.quantization` and `model.dtype` on a device.

    int8 -> int8 weights (CPU: float32 activations; GPU: float16, or bfloat16 when
    model.dtype asks for it). none -> model.dtype, and "auto" keeps the checkpoint's dtype,
    as on the transformers path.
    """
    if model.quantization not in ("none", "int8"):
        raise EngineLoadError(
            f"model.quantization={model.quantization} applies to decoder-only checkpoints "
            "released pre-quantized (HY-MT FP8 / GPTQ-Int4); seq2seq models take none or int8"
        )
    dtype = model.dtype if model.dtype != "auto" else (checkpoint_dtype or "float32")
    if device_type == "cpu":
        if model.quantization == "int8":
            return "int8"
        if dtype != "float32":
            raise EngineLoadError(
                f"model.dtype={dtype} on CPU: CTranslate2 computes float32 or int8 there; "
                "set model.dtype=float32, model.quantization=int8, or model.backend=transformers"
            )
        return "float32"
    if model.quantization == "int8":
        return "int8_bfloat16" if dtype == "bfloat16" else "int8_float16"
    return dtype


def checkpoint_key(path: str) -> str:
    """Hash of a checkpoint folder's files (names and content; see _FULL_HASH_LIMIT)."""
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue  # .complete markers, .cache folders: not the model
        size = file.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        with file.open("rb") as f:
            if size <= _FULL_HASH_LIMIT:
                for block in iter(lambda: f.read(2**20), b""):
                    digest.update(block)
            else:
                for offset in (0, size // 2, size - _SAMPLE_BLOCK):
                    f.seek(offset)
                    digest.update(f.read(_SAMPLE_BLOCK))
    return digest.hexdigest()[:20]


def converted_model(
    hf_path: str,
    compute: str,
    *,
    model_type: str,
    max_positions: int | None,
    trust_remote_code: bool = False,
) -> str:
    """The CTranslate2 folder for `hf_path` at `compute`, converted here if not cached yet."""
    ctranslate2 = import_ctranslate2()
    key = hashlib.sha256(
        f"{checkpoint_key(hf_path)}|{compute}|{ctranslate2.__version__}|{_FORMAT_VERSION}".encode()
    ).hexdigest()[:20]
    target = cache_root() / "ctranslate2" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    # One conversion per node: the other replicas wait here and then read the result.
    with FileLock(str(target) + ".lock"):
        if (target / _DONE).exists():
            return str(target)
        staging = target.with_name(f"{key}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        _convert(hf_path, staging, compute, trust_remote_code)
        meta = {
            "source": hf_path,
            "model_type": model_type,
            "max_position_embeddings": max_positions,
            "compute_type": compute,
            "ctranslate2": ctranslate2.__version__,
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)  # a half-written folder from a crash
        staging.rename(target)
        (target / _DONE).touch()
    return str(target)


def read_meta(ct2_path: str) -> dict[str, Any]:
    """Our notes on a converted folder ({} for one converted elsewhere)."""
    meta = Path(ct2_path) / META_FILE
    if not meta.is_file():
        return {}
    data: dict[str, Any] = json.loads(meta.read_text(encoding="utf-8"))
    return data


def _convert(hf_path: str, out: Path, compute: str, trust_remote_code: bool) -> None:
    from ctranslate2.converters import TransformersConverter

    class _Converter(TransformersConverter):
        def _load(self) -> Any:
            spec = super()._load()
            # The attention CTranslate2 returns (`return_attention`) is one decoder layer's
            # cross-attention; averaged over all heads (0) instead of the first head only, it
            # aligns words well enough to place markup (measured on dev_formats).
            decoder = getattr(spec, "decoder", None)
            if decoder is not None and hasattr(decoder, "alignment_heads"):
                decoder.alignment_heads = type(decoder.alignment_heads)(0)
            return spec

    copy = sorted(
        p.name
        for p in Path(hf_path).iterdir()
        if p.is_file()
        and p.name not in _NOT_COPIED_NAMES
        and not p.name.startswith(".")
        and not p.name.endswith(_NOT_COPIED_SUFFIXES)
        and not p.name.endswith(".index.json")
    )
    from ctranslate2.converters import transformers as hf_loaders

    # The converter lists M2M100/NLLB's vocabulary from `get_vocab()` plus the tokenizer's
    # extra special tokens; with transformers 5 the language codes are no longer among
    # those, and the list comes out shorter than the embedding matrix. Token i is the
    # embedding row i, so the vocabulary is read by id instead.
    originals = {
        name: hf_loaders._MODEL_LOADERS[name]
        for name in ("M2M100Config", "MarianConfig")
        if name in hf_loaders._MODEL_LOADERS
    }
    if "M2M100Config" in originals:

        class _ById(type(originals["M2M100Config"])):  # type: ignore[misc]
            def get_vocabulary(self, model: Any, tokenizer: Any) -> list[str]:
                return _vocabulary_by_id(model, tokenizer)

        hf_loaders._MODEL_LOADERS["M2M100Config"] = _ById()
    if "MarianConfig" in originals:
        hf_loaders._MODEL_LOADERS["MarianConfig"] = _marian_loader(
            type(originals["MarianConfig"]), hf_loaders.BartLoader
        )
    try:
        _Converter(hf_path, copy_files=copy, trust_remote_code=trust_remote_code).convert(
            str(out), quantization=compute, force=True
        )
    except (ValueError, NotImplementedError, OSError) as exc:
        shutil.rmtree(out, ignore_errors=True)
        raise EngineLoadError(
            f"could not convert {hf_path!r} to CTranslate2 ({compute}): {exc}; "
            "set model.backend=transformers to decode with transformers instead"
        ) from exc
    finally:
        hf_loaders._MODEL_LOADERS.update(originals)


def _marian_loader(stock: Any, bart: Any) -> Any:
    """CTranslate2's Marian loader, made to decode as the checkpoint was trained.

    The stock loader drops the last vocabulary entry (`<pad>`, the decoder start token of
    every Hugging Face Marian checkpoint) and starts the decoder from a zero embedding
    instead. That is exact for opus-mt conversions, whose `<pad>` row is zero, but not for a
    checkpoint trained with transformers, whose `<pad>` row learned a value: the demo model
    then began 5.8 % of its translations mid-word ("r Zug fährt ..."; issue #23). Here the
    vocabulary keeps every embedding row, the decoder starts from the checkpoint's
    `decoder_start_token_id` as `generate` does, and `<pad>` gets a logit bias that keeps
    it from being written, as `generate` bans it.
    """

    class _AsTrained(stock):
        def get_model_spec(self, model: Any) -> Any:
            model.config.normalize_before = False
            model.config.normalize_embedding = False
            spec = bart.get_model_spec(self, model)  # the weights as they are, <pad> kept
            pad = model.config.pad_token_id
            if pad is not None:
                import torch

                size = int(spec.decoder.projection.weight.shape[0])
                bias = getattr(spec.decoder.projection, "bias", None)
                bias = (
                    torch.as_tensor(bias).detach().float().reshape(-1).clone()
                    if isinstance(bias, torch.Tensor) and bias.numel() == size
                    else torch.zeros(size)
                )
                bias[int(pad)] = _BANNED_LOGIT
                spec.decoder.projection.bias = bias
            return spec

        def set_config(self, config: Any, model: Any, tokenizer: Any) -> None:
            super().set_config(config, model, tokenizer)  # EOS, UNK
            config.decoder_start_token = tokenizer.convert_ids_to_tokens(
                model.config.decoder_start_token_id
            )

        def set_decoder(self, spec: Any, decoder: Any) -> None:
            bart.set_decoder(self, spec, decoder)  # start_from_zero_embedding stays False

        def get_vocabulary(self, model: Any, tokenizer: Any) -> list[str]:
            return _vocabulary_by_id(model, tokenizer)

    return _AsTrained()


def _vocabulary_by_id(model: Any, tokenizer: Any) -> list[str]:
    """One token per embedding row; ids the tokenizer does not name (M2M100's "madeup"
    words at the end) get unique placeholders, as the converter names them."""
    size = int(model.config.vocab_size)
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    unk, unk_id = tokenizer.unk_token, tokenizer.unk_token_id
    return [
        token if token != unk or i == unk_id else f"madeupword{i}" for i, token in enumerate(tokens)
    ]
