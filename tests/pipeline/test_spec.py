from __future__ import annotations

from pathlib import Path

import pytest

from batchmt.pipeline.spec import SpecError, load_spec, spec_from_dict

BASE = {
    "source_lang": "en",
    "target_lang": "de",
    "input": {"path": "in/"},
    "output": {"path": "out/"},
    "model": {"name_or_path": "models/demo-en-de"},
}

ERRORS = [
    (["decoding.num_beam=2"], r"unknown key 'decoding.num_beam' \(allowed here: .*num_beams"),
    (
        ["model.quantization=int4"],
        r"model.quantization: 'int4' is not allowed \(allowed: none, int8, fp8, gptq-int4\)",
    ),
    (["decoding.num_beams=0"], r"decoding.num_beams: .*greater than or equal to 1"),
    (["sharding.rows_per_shard=lots"], r"sharding.rows_per_shard: .*integer"),
    (["typo=1"], r"unknown key 'typo'"),
    (["input.path.deeper=1"], r"input.path is a value, not a section"),
    (["nokey"], r"expected dotted.key=value"),
]


@pytest.mark.parametrize(("overrides", "message"), ERRORS)
def test_bad_keys_and_values_fail_with_the_key_name(overrides: list[str], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec_from_dict(BASE, overrides)


def test_missing_required_key() -> None:
    data = {k: v for k, v in BASE.items() if k != "model"}
    with pytest.raises(SpecError, match="missing required key 'model'"):
        spec_from_dict(data)


def test_overrides_parse_yaml_values() -> None:
    spec = spec_from_dict(
        BASE,
        [
            "decoding.num_beams=2",
            "output.overwrite=true",
            "input.storage_options.endpoint_url=http://x:9",
        ],
    )
    assert spec.decoding.num_beams == 2 and spec.output.overwrite is True
    assert spec.input.storage_options == {"endpoint_url": "http://x:9"}


def test_fingerprint_tracks_output_shaping_settings_only() -> None:
    base = spec_from_dict(BASE).fingerprint()
    assert spec_from_dict(BASE, ["workers.num_workers=8"]).fingerprint() == base
    assert spec_from_dict(BASE, ["output.overwrite=true"]).fingerprint() == base
    assert spec_from_dict(BASE, ["input.storage_options.key=secret"]).fingerprint() == base
    assert spec_from_dict(BASE, ["decoding.num_beams=1"]).fingerprint() != base
    assert spec_from_dict(BASE, ["model.quantization=int8"]).fingerprint() != base


def test_load_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


def test_demo_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "configs"
    for config in sorted(root.glob("*.yaml")):
        load_spec(config)
