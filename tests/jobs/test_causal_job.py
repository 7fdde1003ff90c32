"""`batchmt run` on a tiny random-weight HunYuanDenseV1 (the HY-MT1.5 architecture): context
windows, a glossary file and HTML rows through the decoder-only engine, end to end."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from batchmt.jobs.cli import main
from batchmt.pipeline.status import EMPTY, TRANSLATED
from tests.jobs.corpora import local_job_config
from tests.workers.tiny_causal import build_tiny_hy_mt

pytestmark = pytest.mark.usefixtures("ray_local")
TAG = re.compile(r"<[^>]+>")


def test_hy_mt_job_with_context_glossary_and_html(tmp_path: Path) -> None:
    model = build_tiny_hy_mt(tmp_path / "tiny-hy-mt")
    texts = [
        "一个男人在公园。",
        "狗和猫在街道。",
        "混元翻译模型。",
        "<p>一个<b>女人</b>在公园。</p>",
        "孩子在水。",
        "   ",
    ]
    table = pa.table(
        {
            "id": [f"h{i}" for i in range(len(texts))],
            "text": texts,
            "doc_id": ["d1", "d1", "d1", "d2", "d2", "d2"],
            "seg_idx": [0, 1, 2, 0, 1, 2],
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    (tmp_path / "terms.csv").write_text("source,target\n混元,HunYuan\n狗,dog\n")
    config = local_job_config(
        tmp_path,
        model,
        source="zh",
        target="en",
        glossary={"path": str(tmp_path / "terms.csv")},
        context={"window": 2},
        decoding={"num_beams": 1, "max_new_tokens": 24},
        workers={"num_workers": 1, "num_cpus": 1},
    )
    assert main(["run", str(config), "--no-progress"]) == 0
    rows = {
        r["id"]: r
        for r in ds.dataset(tmp_path / "out" / "data", format="parquet").to_table().to_pylist()
    }
    assert sorted(rows) == [f"h{i}" for i in range(6)]
    assert all(rows[f"h{i}"]["status"] in TRANSLATED for i in range(5))
    assert rows["h5"]["status"] == EMPTY
    assert "dog" in rows["h1"]["translation"] and rows["h1"]["glossary_missed"] == []
    assert "HunYuan" in rows["h2"]["translation"] and rows["h2"]["glossary_missed"] == []
    html = rows["h3"]
    assert TAG.findall(html["translation"]) == TAG.findall(html["text"])
    # The row went through HY-MT's formatted prompt; a random model writes no <sn> tags
    # back, so the runs between tags were translated one by one around the source markup.
    # (Only that path can lose the block tag <p>: the alignment path never sends it.)
    assert html["format_status"] == "fallback" and "'<p>'" in html["format_detail"]
    assert main(["verify", str(config)]) == 0
