"""Test corpora: documents of sentences plus the awkward rows a real data lake holds."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from tests.tiny_models import WORDS

AWKWARD: list[str | None] = [
    None,
    "",
    "   \n\t ",
    "a man\x00 is\x1b[0m walking.",
    "a wo\u200bman smi\u200cles 🙂 in the park 📷.",
    "رجل يقرأ كتابا. a man is reading.",
    "דני הולך לים.",
    " ".join(["a dog runs in the park."] * 40),  # over the tiny model's input limit
]


def corpus_table(n: int, *, docs: int = 0, seed: int = 0, awkward: bool = True) -> pa.Table:
    """`n` rows with ids r00000.., extra columns, optionally doc_id/seg_idx documents."""
    rng = random.Random(seed)
    texts: list[str | None] = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 10))) + "." for _ in range(n)
    ]
    if awkward:
        for k, text in enumerate(AWKWARD):
            texts[(k * 7919) % n] = text
    columns: dict[str, Any] = {
        "id": [f"r{i:05d}" for i in range(n)],
        "text": texts,
        "lang_hint": ["en"] * n,
        "priority": [i % 3 for i in range(n)],
    }
    if docs:
        per_doc = max(1, n // docs)
        columns["doc_id"] = [f"d{i // per_doc:04d}" for i in range(n)]
        columns["seg_idx"] = [i % per_doc for i in range(n)]
    return pa.table(columns)


def local_job_config(
    tmp_path: Path,
    model_path: Path | str,
    *,
    source: str = "en",
    target: str = "de",
    **sections: Any,
) -> Path:
    """Write `tmp_path/job.yaml`: input `tmp_path/in.parquet`, output `tmp_path/out`."""
    data: dict[str, Any] = {
        "source_lang": source,
        "target_lang": target,
        "input": {"path": str(tmp_path / "in.parquet")},
        "output": {"path": str(tmp_path / "out")},
        "model": {"name_or_path": str(model_path)},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
