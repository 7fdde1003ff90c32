"""`batchmt report` of a real job (the demo model, a glossary) rendered in headless Chromium:
the timeline with its phases and shards, a qe_score histogram, per-term glossary results,
and every flagged row, with the CSV export beside the page holding the same rows."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batchmt.jobs.cli import main
from tests.jobs.test_quality_jobs import _render, chromium  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml

    tmp = tmp_path_factory.mktemp("report")
    (tmp / "terms.tsv").write_text("source\ttarget\ndog\tHund\npark\tPark\nball\tBall\n")
    config = {
        "job_name": "report-details",
        "source_lang": "en",
        "target_lang": "de",
        "input": {"path": str(REPO / "configs/demo/corpus.parquet")},
        "output": {"path": str(tmp / "out")},
        "model": {"name_or_path": str(REPO / "models/demo-en-de"), "backend": "transformers"},
        "decoding": {"num_beams": 1, "max_new_tokens": 64},
        "glossary": {"path": str(tmp / "terms.tsv")},
        "workers": {"num_workers": 1, "num_cpus": 1},
        "sharding": {"rows_per_shard": 16},
        "quality": {"fallback": {"enabled": False}},
    }
    (tmp / "job.yaml").write_text(yaml.safe_dump(config))
    assert main(["--log-level", "warning", "run", str(tmp / "job.yaml"), "--no-progress"]) == 0
    return tmp


def test_the_report_has_timeline_histogram_terms_and_every_flagged_row(
    ran: Path,
    chromium: str,  # noqa: F811
) -> None:
    dom = _render(chromium, ran / "out", ran / "page" / "report.html")
    for section in ("timeline", "qe-histogram", "terms", "flagged"):
        assert f'<section id="{section}">' in dom, section
    timeline = dom.split('<section id="timeline">')[1].split("</section>")[0]
    assert "phases of the last run" in timeline and "load model" in timeline
    assert timeline.count("<rect") >= 3 + 4  # plan, load, translate (Ray was up); 4 shards
    histogram = dom.split('<section id="qe-histogram">')[1].split("</section>")[0]
    assert histogram.count("<rect") == 10
    terms = dom.split('<section id="terms">')[1].split("</section>")[0]
    assert "Hund" in terms and "Park" in terms and "honoured" in terms

    table = pq.read_table(ran / "out" / "data")
    flagged_ids = {
        str(i)
        for i, flags in zip(table.column("id").to_pylist(), table.column("qe_flags").to_pylist())
        if flags
    }
    assert flagged_ids, "the demo corpus has rows QE flags (its long and odd rows)"
    with (ran / "page" / "report-flagged.csv").open(newline="", encoding="utf-8") as f:
        exported = list(csv.DictReader(f))
    assert {row["id"] for row in exported} == flagged_ids and len(exported) == len(flagged_ids)
    flagged = dom.split('<section id="flagged">')[1].split("</section>")[0]
    assert f"all {len(flagged_ids):,} flagged rows as CSV" in flagged
    assert all(i in flagged for i in flagged_ids)
