"""`batchmt quantize` as a user meets it: a tiny model quantized under a budget, its folder
run by `batchmt run` (each layer in its format), and the one-line errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from transformers import AutoModelForSeq2SeqLM

from batchmt.jobs.cli import main
from batchmt.pipeline.spec import ModelSpec
from batchmt.workers.engines.base import EngineConfig, Segment
from batchmt.workers.engines.loading import load_engine
from batchmt.workers.quantization.folder import checkpoint_tensors
from batchmt.workers.quantization.formats import parse_format
from batchmt.workers.quantization.layers import PackedEmbedding, PackedLinear
from tests.jobs.corpora import local_job_config
from tests.tiny_models import build_tiny_marian, corpus
from tests.workers.tiny_causal import build_tiny_hy_mt

TEXTS = [
    "a man is walking in the park.",
    "two dogs are playing with a red ball.",
    "the child is sitting.",
]


def _calibration(path: Path, rows: int = 40, *, reference: bool = True) -> Path:
    lines = corpus(rows, seed=3)
    columns = {"text": lines, **({"reference": lines[::-1]} if reference else {})}
    pq.write_table(pa.table(columns), path)
    return path


def _config(tmp: Path, model: Path, out: Path, **quantize: object) -> Path:
    data = {
        "source_lang": "en",
        "target_lang": "de",
        "model": {"name_or_path": str(model)},
        "decoding": {"num_beams": 2, "max_new_tokens": 12},
        "quantize": {
            "calibration": str(tmp / "calib.parquet"),
            "calibration_rows": 32,
            "out": str(out),
            **quantize,
        },
    }
    path = tmp / "quantize.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def marian(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("quantize")
    model = build_tiny_marian(tmp / "tiny-marian")
    _calibration(tmp / "calib.parquet")
    return tmp, model


@pytest.fixture(scope="module")
def quantized(marian: tuple[Path, Path]) -> Path:
    tmp, model = marian
    out = tmp / "q016"
    # 0.16x: the tiny model's embedding and most layers must drop to 2-3 bits.
    assert (
        main(
            [
                "quantize",
                str(_config(tmp, model, out)),
                "--no-progress",
                "--set",
                "quantize.max_size_ratio=0.16",
            ]
        )
        == 0
    )
    return out


def test_plan_meets_the_budget_and_the_folder_says_what_it_holds(quantized: Path) -> None:
    plan = json.loads((quantized / "quantization.json").read_text())
    assert plan["size_ratio"] <= 0.16
    # The ratio is the files' tensor bytes (safetensors headers) over the checkpoint's.
    written = sum(b for _, b in checkpoint_tensors(quantized).values())
    source = sum(b for _, b in checkpoint_tensors(Path(plan["source"])).values())
    assert written == plan["bytes"] and written <= 0.16 * source
    assert {layer["format"] for layer in plan["layers"]} & {"int2", "int3"}
    for layer in plan["layers"]:
        assert set(layer) >= {"name", "format", "sensitivity", "bytes"}
        if layer["sensitive"]:
            assert layer["format"] in (None, "int8")
    config = json.loads((quantized / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors" and config["format"] == "pack-quantized"
    html = (quantized / "report.html").read_text()
    assert (
        "<svg" in html
        and "int2 everywhere" in html
        and "<script" not in html
        and "http" not in html.replace("http://www.w3.org/2000/svg", "")
    )
    variants = [row["variant"] for row in plan["evaluation"]]
    assert variants == [
        "checkpoint",
        "int8 everywhere",
        "int4 everywhere",
        "int3 everywhere",
        "int2 everywhere",
        "plan",
    ]


def test_the_folder_loads_each_layer_packed_and_decodes_as_the_plan_says(
    marian: tuple[Path, Path], quantized: Path
) -> None:
    _, model = marian
    cpu = torch.device("cpu")
    engine = load_engine(
        EngineConfig("en", "de", ModelSpec(name_or_path=str(quantized))), str(quantized), cpu
    )
    loaded, _ = engine.torch_model()  # type: ignore[misc]
    assert any(isinstance(m, PackedEmbedding) for m in loaded.modules())
    assert sum(isinstance(m, PackedLinear) for m in loaded.modules()) >= 10
    got = engine.translate_batch([Segment(t) for t in TEXTS])
    layers = json.loads((quantized / "quantization.json").read_text())["layers"]
    fp = AutoModelForSeq2SeqLM.from_pretrained(str(model))
    for layer in layers:
        if layer["format"] is None:
            continue
        fmt = parse_format(layer["format"])
        packed = loaded.get_submodule(layer["modules"][0])
        original = fp.get_submodule(layer["modules"][0]).weight.detach()
        cols = original.shape[1]
        group = fmt.group_size or cols
        scale = packed.weight_scale.float().repeat_interleave(group, dim=1)[:, :cols]
        # (an all-zero row, the padding token's embedding, stores scale 0)
        levels = torch.where(scale > 0, packed.weight.float() / scale, 0.0)
        # Each stored value is an integer of the format times its group's scale, near the
        # checkpoint's weight but not equal to it (it was rounded).
        assert torch.equal(levels, levels.round()) and levels.abs().max() <= 2 ** (fmt.bits - 1)
        assert 0 < float((packed.weight - original).norm()) < float(original.norm())
    # Dequantized once at load (model.quantized_layers): plain layers, the same words.
    spec = ModelSpec(name_or_path=str(quantized), quantized_layers="dequantized")
    plain = load_engine(EngineConfig("en", "de", spec), str(quantized), cpu)
    unpacked, _ = plain.torch_model()  # type: ignore[misc]
    assert not any(isinstance(m, PackedEmbedding | PackedLinear) for m in unpacked.modules())
    tied = next(layer for layer in layers if layer["aliases"])
    names = [*tied["modules"], *tied["aliases"]]
    # the tied matrix (embeddings and output head) is still one tensor
    assert len({id(unpacked.get_submodule(n).weight) for n in names}) == 1 < len(names)
    assert plain.translate_batch([Segment(t) for t in TEXTS]) == got


@pytest.mark.usefixtures("ray_local")
def test_a_quantized_folder_round_trips_through_a_job(tmp_path: Path, quantized: Path) -> None:
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": TEXTS}), tmp_path / "in.parquet")
    config = local_job_config(
        tmp_path,
        quantized,
        decoding={"num_beams": 2, "max_new_tokens": 12},
        workers={"num_workers": 1, "num_cpus": 1},
    )
    assert main(["run", str(config), "--no-progress"]) == 0
    rows = ds.dataset(tmp_path / "out" / "data", format="parquet").to_table().to_pylist()
    assert sorted(r["id"] for r in rows) == ["a", "b", "c"]
    assert all(r["translation"] for r in rows)


@pytest.mark.usefixtures("ray_local")
def test_decoder_only_model_quantizes_and_runs(tmp_path: Path) -> None:
    model = build_tiny_hy_mt(tmp_path / "tiny-hy-mt")
    _calibration(tmp_path / "calib.parquet")
    out = tmp_path / "hy-q"
    config = _config(tmp_path, model, out, max_size_ratio=0.8, formats=["int8", "int4"])
    assert (
        main(
            [
                "quantize",
                str(config),
                "--no-progress",
                "--set",
                "source_lang=zh",
                "--set",
                "target_lang=en",
            ]
        )
        == 0
    )
    plan = json.loads((out / "quantization.json").read_text())
    assert plan["family"] == "causal" and plan["size_ratio"] <= 0.8
    groups = json.loads((out / "config.json").read_text())["quantization_config"]["config_groups"]
    targets = {t for g in groups.values() for t in g["targets"]}
    # vLLM fuses q/k/v and gate/up: each fused set shares one scheme.
    for group in groups.values():
        for fused in (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")):
            layers = {t.rsplit(".", 1)[0] for t in group["targets"] if t.endswith(fused)}
            for layer in layers:
                assert all(f"{layer}.{leaf}" in group["targets"] for leaf in fused)
    assert not any("embed" in t or "lm_head" in t for t in targets)
    pq.write_table(
        pa.table({"id": ["h0", "h1"], "text": ["一个男人在公园。", "狗和猫在街道。"]}),
        tmp_path / "in.parquet",
    )
    job = local_job_config(
        tmp_path,
        out,
        source="zh",
        target="en",
        decoding={"num_beams": 1, "max_new_tokens": 12},
        workers={"num_workers": 1, "num_cpus": 1},
    )
    assert main(["run", str(job), "--no-progress"]) == 0
    rows = ds.dataset(tmp_path / "out" / "data", format="parquet").to_table().to_pylist()
    assert sorted(r["id"] for r in rows) == ["h0", "h1"]


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> None:
    assert main(argv) == 2
    # One line says what went wrong (library warnings printed while loading may precede it).
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("batchmt ")]
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err


def test_bad_inputs_fail_in_one_line(
    marian: tuple[Path, Path], quantized: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp, model = marian
    config = str(_config(tmp, model, tmp / "new-out"))
    _fails(
        capsys,
        ["quantize", config, "--set", f"quantize.calibration={tmp / 'nope.parquet'}"],
        "nope.parquet not found",
    )
    _calibration(tmp / "noref.parquet", reference=False)
    _fails(
        capsys,
        ["quantize", config, "--set", f"quantize.calibration={tmp / 'noref.parquet'}"],
        "no 'reference' column",
    )
    _fails(capsys, ["quantize", config, "--set", f"quantize.out={quantized}"], "exists")
    _fails(
        capsys,
        [
            "quantize",
            config,
            "--no-progress",
            "--set",
            "quantize.max_size_ratio=0.05",
            "--set",
            "quantize.formats=[int8,int4]",
        ],
        "no plan fits max_size_ratio 0.0500",
        "smallest reachable is 0.",
    )
    # Every unit marked sensitive (threshold ~0): only int8 / full precision are allowed.
    _fails(
        capsys,
        [
            "quantize",
            config,
            "--no-progress",
            "--set",
            "quantize.sensitive_kl=1.0e-12",
            "--set",
            "quantize.max_size_ratio=0.2",
        ],
        "no plan fits",
    )
    assert not (tmp / "new-out").exists()
