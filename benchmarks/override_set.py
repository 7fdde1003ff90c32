"""Build a glossary override set from a Multi30k split, the way `dev_override.jsonl` was
built from val: every row whose source matches a term of `default_renderings.tsv`, with
those matched terms forced to the table's non-default target.

    python -m benchmarks.override_set                         # test_2016_flickr
    python -m benchmarks.override_set --split val --out /tmp/val_override.jsonl

Rebuilt from `val`, this reproduces `dev_override.jsonl` row for row (ids `o<line>`); the
test set's ids are `t<line>` (0-based line of the split). The output is derived data and
stays out of git (default: `out/glossary/<split>_override.jsonl`, ignored).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from batchmt.pipeline.text.glossary import Glossary, parse_row_glossary

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def load_table(path: Path) -> dict[str, str]:
    """default_renderings.tsv: source -> forced target."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return {line.split("\t")[0]: line.split("\t")[1] for line in lines if line.strip()}


def build(split: str, data: Path = DATA, prefix: str | None = None) -> list[dict[str, object]]:
    table = load_table(data / "glossary" / "default_renderings.tsv")
    glossary = Glossary(parse_row_glossary(table))
    english = (data / "multi30k" / f"{split}.en").read_text(encoding="utf-8").splitlines()
    german = (data / "multi30k" / f"{split}.de").read_text(encoding="utf-8").splitlines()
    tag = prefix or ("o" if split == "val" else "t")
    rows: list[dict[str, object]] = []
    for i, (source, reference) in enumerate(zip(english, german, strict=True)):
        matched = dict.fromkeys(m.term.source for m in glossary.match(source))
        if matched:
            terms = {s: t for s, t in table.items() if s in matched}  # table order
            rows.append({"id": f"{tag}{i}", "source": source, "reference": reference,
                         "glossary": terms})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--split", default="test_2016_flickr")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or REPO / "out" / "glossary" / f"{args.split}_override.jsonl"
    rows = build(args.split, args.data_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    out.write_text(text, encoding="utf-8")
    print(f"{len(rows)} rows -> {out}")


if __name__ == "__main__":
    main()
