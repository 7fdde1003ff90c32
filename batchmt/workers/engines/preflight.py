"""Checks of a model that the driver can make before it claims the output: the folder and
its config exist, weights are there, and the model can produce the job's languages.

A model that cannot load must fail the job with exit 2 before `_manifest.json` is written:
otherwise the output is claimed by a spec that never ran, and the fixed rerun is refused
as a different job. Only what is cheap to tell is checked (a config file, a file listing,
the tokenizer files open, the tokenizer's language codes); loading the weights stays the
replicas' job (a replica that cannot load them undoes a fresh claim: jobs/driver.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from batchmt.pipeline.storage.paths import where
from batchmt.workers.engines.base import EngineLoadError
from batchmt.workers.engines.hub import check_hub_model
from batchmt.workers.engines.hymt.languages import hy_mt_code
from batchmt.workers.engines.nllb_codes import nllb_code

# Weight files of the formats the engines load (transformers, CTranslate2).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt")


def check_model(
    name_or_path: str, source_lang: str, target_lang: str, base_dir: str | None = None
) -> None:
    """Raise EngineLoadError (one line, with the fix) when the model surely cannot run.

    Hub ids and object-store URLs are not fetched here (the replicas fetch them once per
    node); a local folder is checked in full.
    """
    if "://" in name_or_path and not name_or_path.startswith("file://"):
        return  # s3://, gs://, https://: fetched by the replicas (engines/checkpoints.py)
    folder = _local_folder(name_or_path, base_dir)
    if folder is None:  # a hub id such as Helsinki-NLP/opus-mt-en-de
        check_hub_model(name_or_path)
        return
    config = _read_config(folder, name_or_path)
    weights = [p.name for p in folder.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES)]
    if not weights:
        raise EngineLoadError(
            f"model folder {name_or_path!r} has no weight files (*.safetensors, *.bin); "
            "check model.name_or_path points at a complete model folder"
        )
    for name in weights:
        if name.endswith(".safetensors"):
            _check_safetensors(folder / name, name_or_path)
    _check_tokenizer_files(folder, name_or_path)
    if "model_type" in config:  # a transformers checkpoint: its languages can be told
        _check_languages(folder, config, name_or_path, source_lang, target_lang)


def local_model(
    name_or_path: str, base_dir: str | None = None
) -> tuple[Path, dict[str, Any]] | None:
    """A local model folder and its config.json; None for hub ids and remote URLs."""
    if "://" in name_or_path and not name_or_path.startswith("file://"):
        return None
    folder = _local_folder(name_or_path, base_dir)
    return None if folder is None else (folder, _read_config(folder, name_or_path))


def _local_folder(name_or_path: str, base_dir: str | None) -> Path | None:
    local = name_or_path.removeprefix("file://")
    for candidate in (Path(local).expanduser(), Path(base_dir or ".") / local):
        if candidate.is_dir():
            return candidate
        if candidate.exists():
            raise EngineLoadError(
                f"model.name_or_path {name_or_path!r} is a file; it must be a model folder "
                "(config.json and weights), an object-store URL or a hub id"
            )
    looks_local = local.startswith((".", "/", "~")) or local.count("/") > 1
    if looks_local:
        raise EngineLoadError(
            f"model folder {name_or_path!r} not found{where(local, base_dir)}; check "
            "model.name_or_path"
        )
    return None


def _read_config(folder: Path, name: str) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineLoadError(
            f"model folder {name!r} has no config.json; check model.name_or_path"
        ) from None
    except (OSError, ValueError) as exc:
        raise EngineLoadError(
            f"config.json of model {name!r} is unreadable ({type(exc).__name__}: {exc}); "
            "re-download or re-export the model"
        ) from None
    if not isinstance(config, dict):
        raise EngineLoadError(f"config.json of model {name!r} is not a JSON object")
    return config


def _check_safetensors(path: Path, name: str) -> None:
    """The header says where every tensor ends: a truncated or garbled download shows
    here, from a few bytes, instead of in every replica after the output is claimed."""
    size = path.stat().st_size
    problem = None
    try:
        with path.open("rb") as f:
            head = f.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if length < 2 or 8 + length > size:
                problem = "its header is cut off"
            else:
                header = json.loads(f.read(length))
                ends = [
                    int(t["data_offsets"][1])
                    for key, t in header.items()
                    if key != "__metadata__" and isinstance(t, dict)
                ]
                if max(ends, default=0) > size - 8 - length:
                    problem = f"it holds {size:,} bytes, fewer than its tensors need"
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        problem = f"its header is unreadable ({type(exc).__name__})"
    if problem:
        raise EngineLoadError(
            f"weights file {path.name} of model {name!r} is broken: {problem}; "
            "re-download or re-export the model"
        )


# SentencePiece models of the tokenizers the engines load (Marian, M2M100/NLLB, LLaMA-style).
_SPM_NAMES = ("source.spm", "target.spm", "sentencepiece.bpe.model", "spm.model", "tokenizer.model")


def _check_tokenizer_files(folder: Path, name: str) -> None:
    """A garbage tokenizer file fails every replica after the output is claimed; opening it
    here costs milliseconds."""
    for file in _SPM_NAMES:
        path = folder / file
        if not path.is_file():
            continue
        import sentencepiece

        try:
            sentencepiece.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError, ValueError) as exc:
            raise EngineLoadError(
                f"tokenizer file {file} of model {name!r} is unreadable "
                f"({type(exc).__name__}); re-download or re-export the model"
            ) from None
    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.is_file():
        try:
            json.loads(tokenizer_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EngineLoadError(
                f"tokenizer.json of model {name!r} is unreadable ({type(exc).__name__}); "
                "re-download or re-export the model"
            ) from None


def _check_languages(
    folder: Path, config: dict[str, Any], name: str, source: str, target: str
) -> None:
    """The same rules the engines apply when they load (seq2seq.py, causal.py)."""
    if not config.get("is_encoder_decoder", False):
        # Decoder-only models are driven by HY-MT's prompts, which name the languages.
        for key, lang in (("source_lang", source), ("target_lang", target)):
            try:
                hy_mt_code(lang)
            except ValueError as exc:
                raise EngineLoadError(f"{key}: {exc}") from None
        return
    if config.get("model_type") != "m2m_100":
        return  # bilingual (Marian): the direction is baked in, nothing to tell
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise EngineLoadError(f"could not load the tokenizer of model {name!r}: {exc}") from None
    codes: dict[str, int] | None = getattr(tokenizer, "lang_code_to_id", None)
    if codes and hasattr(tokenizer, "get_lang_id"):  # M2M100: codes like "de"
        known = sorted(codes)
        if target not in codes:
            raise EngineLoadError(
                f"target_lang {target!r} is not a language model {name!r} can produce; its "
                f"codes are: {', '.join(known)}"
            )
        return
    try:
        code = nllb_code(target)  # NLLB: FLORES-200 codes (deu_Latn)
    except ValueError as exc:
        raise EngineLoadError(f"target_lang: {exc}") from None
    token = tokenizer.convert_tokens_to_ids(code)
    if token is None or token == tokenizer.unk_token_id:
        raise EngineLoadError(
            f"target_lang {target!r} ({code}) is not a language model {name!r} can produce; "
            "use an ISO code batchmt maps to FLORES-200 or the model's own code (deu_Latn)"
        )
