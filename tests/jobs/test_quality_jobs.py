"""Row-level QE end to end with the demo model: `batchmt score` on a faulty set (the issue's
bar: >= 90 % of faulty rows flagged, <= 10 % of correct ones), its resume, `batchmt run` with
the QE fallback on rows the demo model fails, and `batchmt report` rendered in headless
Chromium with a `<script>` row shown as text, not run."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchmt.jobs.cli import main
from batchmt.pipeline.spec import ModelSpec
from batchmt.pipeline.status import OK_FALLBACK
from benchmarks.qe_faults import CORRECT, DATA, faulty_set
from tests.jobs.corpora import local_job_config

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "models" / "demo-en-de"
ATTACK = "<script>document.body.setAttribute('data-pwned','1')</script> A dog runs."
# Forced decoding and the fallback's search live in the transformers engine.
MODEL = {"backend": "transformers"} if "backend" in ModelSpec.model_fields else {}


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[int, str]]]:
    if not (DATA / "val.fr").exists():
        pytest.skip(f"shared data not found at {DATA} (CI always has it)")
    tmp = tmp_path_factory.mktemp("score")
    rows = faulty_set("val", 60)
    table = pa.table(
        {
            "id": [r.id for r in rows] + [-1],
            "text": [r.source for r in rows] + [ATTACK],
            "translation": [r.translation for r in rows] + [ATTACK],
            "reference": [r.reference for r in rows] + ["Ein Hund rennt."],
        }
    )
    pq.write_table(table, tmp / "in.parquet")
    config = local_job_config(
        tmp, DEMO, model=MODEL, sharding={"rows_per_shard": 25}, workers={"num_workers": 1}
    )
    assert main(["score", str(config), "--no-progress"]) == 0
    yield tmp, {r.id: r.fault for r in rows}


def test_score_flags_faulty_rows_and_not_correct_ones(
    scored: tuple[Path, dict[int, str]],
) -> None:
    tmp, faults = scored
    out = pq.read_table(tmp / "out" / "data").to_pylist()
    assert sorted(r["id"] for r in out) == sorted([*faults, -1])  # every row, once
    assert {"translation", "reference", "qe_score", "qe_flags"} <= set(out[0])
    rows = [r for r in out if r["id"] in faults]
    correct = [bool(r["qe_flags"]) for r in rows if faults[r["id"]] == CORRECT]
    faulty = [bool(r["qe_flags"]) for r in rows if faults[r["id"]] != CORRECT]
    assert sum(faulty) / len(faulty) >= 0.9
    assert sum(correct) / len(correct) <= 0.1
    assert all(isinstance(r["qe_score"], float) for r in rows)
    success = json.loads((tmp / "out" / "_SUCCESS").read_text())
    assert success["qe"]["checked"] == len(out) and success["qe"]["flagged"] >= sum(faulty)
    quality = json.loads(next((tmp / "out" / "quality").glob("*.json")).read_text())
    assert quality["reference"]["segments"] == quality["num_rows"]  # every row, not a sample


def test_score_resumes_and_run_refuses_its_input(
    scored: tuple[Path, dict[int, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp, _ = scored
    config = str(tmp / "job.yaml")
    assert main(["score", config, "--no-progress"]) == 0
    assert "already complete" in capsys.readouterr().out
    # The input holds `translation`: run would overwrite it and says so.
    assert main(["run", config, "--no-progress", "--set", "output.path=" + str(tmp / "o2")]) == 2
    assert "translation" in capsys.readouterr().err


FAILING = [
    "A dog runs in the park.",
    "dog dog dog dog dog dog dog dog dog dog",
    "Quantum chromodynamics describes the strong interaction between quarks and gluons.",
    'Two men are playing <b>soccer</b> on a <a href="https://example.com">green field</a>.',
    ATTACK,
    "",
]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run over rows the demo model fails, with a glossary and a markup row."""
    tmp = tmp_path_factory.mktemp("run")
    table = pa.table({"id": list(range(len(FAILING))), "text": FAILING})
    pq.write_table(table, tmp / "in.parquet")
    (tmp / "terms.tsv").write_text("source\ttarget\npark\tPark\n", encoding="utf-8")
    config = local_job_config(
        tmp, DEMO, model=MODEL, workers={"num_workers": 1},
        glossary={"path": str(tmp / "terms.tsv")},
    )  # fmt: skip
    assert main(["run", str(config), "--no-progress"]) == 0
    return tmp


def test_the_fallback_wins_on_rows_the_demo_model_fails(
    ran: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = {r["id"]: r for r in pq.read_table(ran / "out" / "data").to_pylist()}
    assert sorted(out) == list(range(len(FAILING)))  # every row, once
    won = [i for i, r in out.items() if r["status"] == OK_FALLBACK]
    assert won and all("quality.fallback" in out[i]["error"] for i in won)
    assert "Park" in out[0]["translation"] and out[0]["glossary_missed"] == []
    assert out[5]["status"] == "empty" and out[5]["qe_score"] is None
    assert out[5]["qe_flags"] == []
    success = json.loads((ran / "out" / "_SUCCESS").read_text())
    assert success["by_status"][OK_FALLBACK] == len(won)
    assert success["qe"]["fallback_won"] == len(won) <= success["qe"]["fallback_tried"]
    capsys.readouterr()
    assert main(["status", str(ran / "out"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["rows"]["by_status"][OK_FALLBACK] == status["qe"]["fallback_won"] == len(won)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed by tools/ensure_chromium.sh when missing (CI is root)."""
    found = subprocess.run(
        ["sh", str(REPO / "tools" / "ensure_chromium.sh")], capture_output=True, text=True
    )
    if found.returncode != 0 or not found.stdout.strip():
        pytest.skip(f"NO CHROMIUM, report not rendered: {found.stderr.strip()[-300:]}")
    return found.stdout.strip().splitlines()[-1]


def _render(chromium: str, output: Path, page: Path) -> str:
    assert main(["report", str(output), "--out", str(page)]) == 0
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def test_the_report_renders_in_chromium_and_runs_no_script(ran: Path, chromium: str) -> None:
    dom = _render(chromium, ran / "out", ran / "report.html")
    assert "data-pwned" not in dom.split("<body", 1)[1].split(">", 1)[0]  # the script never ran
    assert "&lt;script&gt;document.body.setAttribute" in dom  # shown as text
    for section in ("summary", "statuses", "flags", "throughput", "flag-rates", "glossary",
                    "formats", "worst"):  # fmt: skip
        assert f'<section id="{section}">' in dom
    assert "no glossary" not in dom and "no markup rows" not in dom  # every section filled
    assert "adherence" in dom and OK_FALLBACK in dom and dom.count("<rect") >= 2


def test_the_report_of_a_score_shows_the_worst_rows(
    scored: tuple[Path, dict[int, str]], chromium: str
) -> None:
    tmp, _ = scored
    dom = _render(chromium, tmp / "out", tmp / "report.html")
    assert "&lt;script&gt;" in dom and "data-pwned=" not in dom.split("</head>")[1][:300]
    assert dom.count("<rect") >= 2 * 3  # a bar per shard in both charts
    assert "wrong_language" in dom and "low_confidence" in dom and "BLEU" in dom
