"""Translation memory keys: what makes two rows' outputs the same, hashed.

A row's key is sha256 over canonical JSON of two parts:

- the job part, the same for every row of a replica (`job_identity`): the key schema
  version, the model's identity (a content hash of its files, not its path, plus how it is
  run: backend, quantization, dtype or compute type, family, device type), every decoding
  setting that can change a translation, the languages, the formats options, and the QE
  thresholds and fallback settings (they decide the flags and which rows are re-decoded);
- the row part: its raw text (the shard loop cleans it the same way every time), its
  context window when the model sees one, and the glossary terms that could match it
  (source, target, case), not the whole glossary, so a changed term misses only the rows it
  could reach.

Batch sizing (`max_batch_tokens`, `max_batch_size`) is left out: a job served partly from
memory batches its other rows differently anyway, and a memory must survive tuning them.
Bump KEY_VERSION whenever the shard loop changes what it writes for the same inputs: every
old entry then misses instead of serving a stale row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchmt.pipeline.spec import JobSpec
from batchmt.pipeline.text.glossary import Glossary, Term
from batchmt.workers.engines.conversion import checkpoint_key
from batchmt.workers.formats.plan import FormatOptions, prepare_formats
from batchmt.workers.translate import RowInput, clean_text

# 2 (issue #23): CTranslate2 decodes Marian from its trained start token; plain rows keep
# their line breaks; HTML character references come back as the source spelled them.
KEY_VERSION = 2
# Decoding settings that only group rows into batches; see the module docstring.
_BATCHING = ("max_batch_tokens", "max_batch_size")
# Engine signature entries that name, not identify, the model (the content hash does).
_NAMING = ("model",)


def _digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def model_identity(spec: JobSpec, model_path: str, signature: dict[str, str]) -> dict[str, Any]:
    """The model as the memory knows it: its files' content hash (the CTranslate2
    conversion cache's own key) or, for a hub id, the id at its revision; and how it runs."""
    model = spec.model.model_dump(mode="json")
    name = model.pop("name_or_path")
    model.pop("vllm_compile")  # speed only (and keys written before it existed stay valid)
    if Path(model_path).is_dir():
        content = checkpoint_key(model_path)
    else:  # a hub id the workers load by name: pin model.revision for a stable identity
        content = f"hub:{name}@{spec.model.revision or 'default'}"
    running = {k: v for k, v in sorted(signature.items()) if k not in _NAMING}
    return {"content": content, "settings": model, "engine": running}


def job_identity(spec: JobSpec, model: dict[str, Any]) -> dict[str, Any]:
    """Everything but the row that decides a row's output (see the module docstring)."""
    decoding = spec.decoding.model_dump(mode="json")
    for name in _BATCHING:
        decoding.pop(name)
    quality = spec.quality.model_dump(mode="json")
    quality.pop("sample_per_shard")  # the quality file's sample, not the rows
    return {
        "version": KEY_VERSION,
        "model": model,
        "decoding": decoding,
        "languages": [spec.source_lang, spec.target_lang],
        "formats": spec.formats.model_dump(mode="json"),
        "context": spec.context.model_dump(mode="json"),
        "quality": quality,
    }


def sees_context(spec: JobSpec, signature: dict[str, str]) -> bool:
    """Whether the context window reaches the model: seq2seq models see it only with
    context.seq2seq_use_context (then keying it would only cost hits); others always."""
    return signature.get("family") != "seq2seq" or spec.context.seq2seq_use_context


class RowKeys:
    """Keys for a replica's rows; one per replica (the job part is hashed once)."""

    def __init__(self, spec: JobSpec, model: dict[str, Any], signature: dict[str, str]) -> None:
        self.job = _digest(job_identity(spec, model))
        self.with_context = sees_context(spec, signature)
        self.formats = FormatOptions.from_spec(spec.formats)

    def key(self, row: RowInput) -> str | None:
        """The row's key, or None for a row the memory leaves alone: no text to translate,
        or a row glossary that fails the row (cheap to redo, and not a translation)."""
        if row.text is None or row.glossary_error is not None:
            return None
        cleaned = clean_text(row.text)
        if not cleaned.strip():
            return None
        terms = _terms(row.glossary, cleaned.strip(), self.formats) if row.glossary else []
        part = {
            "job": self.job,
            "text": row.text,
            "context": list(row.context) if self.with_context else None,
            "terms": terms,
        }
        # 128 bits: collisions stay out of reach for any corpus, at half a hex key's bytes.
        return _digest(part)[:32]


def _terms(glossary: Glossary, body: str, formats: FormatOptions) -> list[list[Any]]:
    """(source, target, case) of every term that could be matched in the row: in its text,
    and in the units the format plan cuts it into (markup removed, a term may read whole
    there that the markup splits in the source)."""
    found: set[Term] = glossary.candidates(body)
    if formats.mode != "text":
        for unit in _units(body, formats):
            if unit not in body:  # a part of the text as it is holds no term the text lacks
                found |= glossary.candidates(unit)
    return sorted([t.source, t.target, t.case_sensitive] for t in found)


def _units(body: str, formats: FormatOptions) -> Sequence[str]:
    try:
        return prepare_formats(body, formats).units
    except Exception:  # noqa: BLE001 - the shard loop fails such a row itself; key the text
        return ()
