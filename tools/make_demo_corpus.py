"""Build configs/demo/corpus.parquet, the demo's sample corpus, from configs/demo/sentences.tsv.

The sentences are the project's own (no third-party text is bundled). A few awkward rows
are added on purpose, so the demo shows what happens to them: null and whitespace-only
text, control and zero-width characters, emoji, right-to-left script, and one document
longer than the model's input limit (translated in pieces, flagged `ok_split`).

    python tools/make_demo_corpus.py            # rewrites the file deterministically
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent.parent / "configs" / "demo"


def build_rows(sentences_path: Path) -> list[dict[str, object]]:
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
    awkward: list[str | None] = [
        None,
        "",
        "   \n\t ",
        "A man\x00 is\x1b[0m riding a horse.",
        "A wo\u200bman is smi\u200cling 🙂 at the camera 📷.",
        "رجل يقرأ كتابا. A man is reading a book.",
        " ".join(plain * 2),  # longer than the demo model's input limit
    ]
    for seg, text in enumerate(awkward):
        rows.append({"doc_id": "awkward", "seg_idx": seg, "text": text})
    for i, row in enumerate(rows):
        row["id"] = f"demo-{i:04d}"
        row["source_url"] = f"https://example.org/demo/{row['doc_id']}#{row['seg_idx']}"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "corpus.parquet")
    args = parser.parse_args()
    rows = build_rows(HERE / "sentences.tsv")
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
    pq.write_table(table, args.out, row_group_size=16)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
