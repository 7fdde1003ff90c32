"""Build the demo corpora (configs/demo/corpus*.parquet) from configs/demo/sentences*.tsv.

The sentences are the project's own (no third-party text is bundled). A few awkward rows
are added on purpose, so the demo shows what happens to them: null and whitespace-only
text, control and zero-width characters, emoji, right-to-left script, and one document
longer than the model's input limit (translated in pieces, flagged `ok_split`).

    python tools/make_demo_corpus.py            # en: rewrites corpus.parquet deterministically
    python tools/make_demo_corpus.py --lang zh  # zh: corpus-zh.parquet (Simplified and Traditional)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent.parent / "configs" / "demo"


AWKWARD: dict[str, list[str | None]] = {
    "en": [
        None,
        "",
        "   \n\t ",
        "A man\x00 is\x1b[0m riding a horse.",
        "A wo\u200bman is smi\u200cling 🙂 at the camera 📷.",
        "رجل يقرأ كتابا. A man is reading a book.",
    ],
    "zh": [
        None,
        "",
        "　\n",  # an ideographic space only
        "我\x00喜欢\x1b[0m喝茶。",
        "她笑了🙂，\u200b我也笑了。",
    ],
}


def build_rows(sentences_path: Path, lang: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    seg_of: dict[str, int] = {}
    for line in sentences_path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        doc_id, text = line.split("\t", 1)
        seg = seg_of.get(doc_id, 0)
        seg_of[doc_id] = seg + 1
        rows.append({"doc_id": doc_id, "seg_idx": seg, "text": text})
    plain = [str(r["text"]) for r in rows]
    glue = "" if lang == "zh" else " "
    # The last awkward row is longer than the demo model's input limit.
    awkward = [*AWKWARD[lang], glue.join(plain * (6 if lang == "zh" else 2))]
    for seg, text in enumerate(awkward):
        rows.append({"doc_id": "awkward", "seg_idx": seg, "text": text})
    for i, row in enumerate(rows):
        row["id"] = f"demo-{i:04d}"
        row["source_url"] = f"https://example.org/demo/{row['doc_id']}#{row['seg_idx']}"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", choices=["en", "zh"], default="en")
    args = parser.parse_args()
    suffix = "" if args.lang == "en" else f"-{args.lang}"
    out = HERE / f"corpus{suffix}.parquet"
    rows = build_rows(HERE / f"sentences{suffix}.tsv", args.lang)
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("doc_id", pa.string()),
            ("seg_idx", pa.int32()),
            ("text", pa.string()),
            ("source_url", pa.string()),
        ]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    # Small row groups, so even the demo plans several shards from Parquet metadata.
    pq.write_table(table, out, row_group_size=16)
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
