"""Issue #23, finding 10, end to end through the CLI: a row whose `format_status` is `ok`
has every byte of its source markup (tags, a tag cut off at the end, character
references), a plain row keeps its `\\r\\n`, and ids the input repeats are reported by
`batchmt plan` and by the run summary (and `_SUCCESS`)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from batchmt.jobs.cli import main
from tests.jobs.corpora import local_job_config

pytestmark = pytest.mark.usefixtures("ray_local")

# What must come back byte for byte: tags, a tag cut off at the end, character references.
MARKUP = re.compile(r"<[^<>]*>|<[A-Za-z][^<>]*$|&(?:[A-Za-z]+|#\d+|#x[\da-fA-F]+);")

ROWS = [
    ("m1", "a dog runs in the <b>park</b> <p"),
    ("m2", "tom &amp; jerry <b>play</b> with a ball."),
    ("m3", "a man <i>walks</i> 10&nbsp;km in the water."),
    ("m4", "two dogs&nbsp;play in <b>the</b> street."),
    ("p1", "a dog runs.\r\nthe child is playing."),
    ("p2", "a man sits.\n\na woman walks."),
    ("d", "a dog is walking."),
    ("d", "a cat is walking."),
    ("d2", "the people sit."),
    ("d2", "the people stand."),
]


def test_markup_line_breaks_and_repeated_ids(
    tiny_marian: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids, texts = zip(*ROWS, strict=True)
    pq.write_table(pa.table({"id": list(ids), "text": list(texts)}), tmp_path / "in.parquet")
    config = local_job_config(
        tmp_path,
        tiny_marian,
        decoding={"num_beams": 2, "max_new_tokens": 48, "max_length_a": 3.0},
        workers={"num_workers": 1},
        sharding={"rows_per_shard": 4},
    )
    assert main(["plan", str(config)]) == 0
    planned = capsys.readouterr().err
    assert "2 id(s) occur more than once in the input (4 rows: d, d2)" in planned

    assert main(["run", str(config), "--no-progress"]) == 0
    report = capsys.readouterr().out
    assert "2 id(s) occur more than once" in report
    success = json.loads((tmp_path / "out" / "_SUCCESS").read_text())
    summary = success.get("summary", success)
    assert summary["duplicate_ids"] == {"ids": 2, "rows": 4, "sample": ["d", "d2"]}

    out = ds.dataset(tmp_path / "out" / "data", format="parquet").to_table().to_pylist()
    assert Counter(r["id"] for r in out) == Counter(ids)  # every row written, repeats too
    by_text = {r["text"]: r for r in out}
    for _, source in ROWS[:4]:
        row = by_text[source]
        if row["format_status"] != "ok":
            assert row["format_detail"], row  # not ok: it says why
            continue
        wanted, have = Counter(MARKUP.findall(source)), Counter(MARKUP.findall(row["translation"]))
        assert not wanted - have, (source, row["translation"])
    for _, source in ROWS[4:6]:
        breaks = re.findall(r"\s*(?:\r\n|\n)\s*", source)
        assert re.findall(r"\s*(?:\r\n|\n)\s*", by_text[source]["translation"]) == breaks
