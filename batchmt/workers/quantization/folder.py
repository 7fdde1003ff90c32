"""A quantized model folder: written by `batchmt quantize`, loaded by the engines.

The folder is the source checkpoint's folder (tokenizer, generation config) with:
- `config.json` + `quantization_config` in compressed-tensors' schema (pack-quantized, one
  config group per format, targets = exact module names), which is how the folder says
  what it holds and what vLLM reads for a decoder-only model in int8 / int4;
- `model.safetensors`: `<module>.weight_packed / weight_scale / weight_shape` for every
  quantized layer, every other tensor of the checkpoint as it was;
- `quantization.json`: the plan (per-unit format, sensitivity, bytes), the size ratio,
  tied aliases and the tensors the architecture computes itself (checked at load).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from batchmt.workers.quantization import QuantizationError
from batchmt.workers.quantization.formats import QuantFormat, pack, parse_format
from batchmt.workers.quantization.layers import PackedEmbedding, PackedLinear, PackedWeight
from batchmt.workers.quantization.rounding import Rounder
from batchmt.workers.quantization.units import Unit, weight_of

PLAN_FILE = "quantization.json"
PRODUCER = "batchmt quantize"
_WEIGHT_FILES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".safetensors.index.json",
    ".bin.index.json",
)


class QuantizedFolderError(QuantizationError):
    """A quantized folder that cannot be loaded as written (names the file and the fix)."""


def checkpoint_tensors(folder: Path) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (shape, bytes) of every tensor in the folder's safetensors files."""
    found: dict[str, tuple[tuple[int, ...], int]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                sl = f.get_slice(key)
                shape = tuple(sl.get_shape())
                numel = 1
                for d in shape:
                    numel *= d
                found[key] = (shape, numel * _DTYPE_BYTES.get(sl.get_dtype(), 4))
    return found


_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


def quantized_state(
    model: nn.Module,
    units: list[Unit],
    plan: dict[str, QuantFormat | None],
    kept: set[str],
    rounder: Rounder,
) -> dict[str, torch.Tensor]:
    """The tensors of the quantized checkpoint: packed layers (the values `rounder` chose)
    + the checkpoint's other tensors."""
    tensors: dict[str, torch.Tensor] = {}
    replaced: set[str] = set()
    for unit in units:
        fmt = plan.get(unit.name)
        if fmt is None:
            continue
        for module_name, (q, scale) in zip(unit.modules, rounder.values(unit, fmt)):
            weight = weight_of(model, module_name)
            tensors[f"{module_name}.weight_packed"] = pack(q, fmt.bits)
            tensors[f"{module_name}.weight_scale"] = scale
            tensors[f"{module_name}.weight_shape"] = torch.tensor(tuple(weight.shape))
            replaced.add(f"{module_name}.weight")
        replaced.update(f"{alias}.weight" for alias in unit.aliases)
    for key, value in model.state_dict().items():
        if key in kept and key not in replaced:
            tensors[key] = value.detach().contiguous().clone()
    return tensors


def compressed_tensors_config(
    units: list[Unit], plan: dict[str, QuantFormat | None]
) -> dict[str, Any]:
    groups: dict[str, Any] = {}
    for unit in units:
        fmt = plan.get(unit.name)
        if fmt is None:
            continue
        group = groups.setdefault(
            fmt.name.replace("-", "_"),
            {
                "targets": [],
                "weights": fmt.scheme(),
                "input_activations": None,
                "output_activations": None,
                "format": "pack-quantized",
            },
        )
        group["targets"].extend(unit.modules)
    return {
        "quant_method": "compressed-tensors",
        "format": "pack-quantized",
        "quantization_status": "compressed",
        "config_groups": groups,
        "ignore": [],
        "kv_cache_scheme": None,
        "global_compression_ratio": None,
    }


def write_folder(
    source: Path,
    out: Path,
    tensors: dict[str, torch.Tensor],
    quantization_config: dict[str, Any],
    plan_json: dict[str, Any],
    card: str,
) -> None:
    """Write the folder whole: into a temporary sibling, renamed into place at the end."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        for item in source.iterdir():
            if (
                item.is_file()
                and not item.name.endswith(_WEIGHT_FILES)
                and item.name not in ("README.md", "eval.json", "config.json")
            ):
                shutil.copy2(item, tmp / item.name)
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
        config["quantization_config"] = quantization_config
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / PLAN_FILE).write_text(json.dumps(plan_json, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(card, encoding="utf-8")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_quantized_folder(path: str | Path) -> bool:
    plan = Path(path) / PLAN_FILE
    if not plan.is_file():
        return False
    try:
        return json.loads(plan.read_text(encoding="utf-8")).get("producer") == PRODUCER
    except (OSError, ValueError):
        return False


def load_quantized(
    path: str | Path,
    family: str,
    dtype: torch.dtype,
    device: torch.device,
    *,
    trust_remote_code: bool = False,
    dequantize_at_load: bool = False,
) -> Any:
    """Build the architecture from config.json, put each quantized layer in its packed format,
    load every other tensor, and check nothing is left uninitialised. `dequantize_at_load`:
    every packed layer becomes a plain Linear / Embedding holding its dequantized values
    (tied matrices stay one tensor), for speed where no kernel exists."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    folder = Path(path)
    plan = json.loads((folder / PLAN_FILE).read_text(encoding="utf-8"))
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    if hasattr(config, "quantization_config"):
        delattr(
            config, "quantization_config"
        )  # ours: loaded below, not by a transformers quantizer
    cls = AutoModelForCausalLM if family == "causal" else AutoModelForSeq2SeqLM
    model = cls.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        for key in f.keys():  # noqa: SIM118
            state[key] = f.get_tensor(key)
    loaded: set[str] = set()
    for entry in plan["layers"]:
        if entry["format"] is None:
            continue
        fmt = parse_format(entry["format"])
        first: PackedWeight | None = None
        for module_name in entry["modules"]:
            first = _swap(model, module_name, state, fmt, dtype)
            loaded.add(f"{module_name}.weight")
        for alias in entry.get("aliases", []):
            packed = _swap_alias(model, alias, first, fmt, dtype)
            packed.share_from(first)  # type: ignore[arg-type]
            loaded.add(f"{alias}.weight")
    rest = {
        k: v
        for k, v in state.items()
        if not k.endswith(("weight_packed", "weight_scale", "weight_shape"))
    }
    result = model.load_state_dict(rest, strict=False)
    if result.unexpected_keys:
        raise QuantizedFolderError(
            f"{folder}/model.safetensors holds tensors the architecture does not have: "
            f"{result.unexpected_keys[:5]}; re-run batchmt quantize"
        )
    computed = set(plan.get("computed_tensors", []))
    missing = [
        k
        for k in result.missing_keys
        if k not in loaded and k not in computed and not _packed_key(k)
    ]
    if missing:
        raise QuantizedFolderError(
            f"{folder}/model.safetensors lacks tensors the model needs: {missing[:5]}; "
            "re-run batchmt quantize"
        )
    if dequantize_at_load:
        _unpack_all(model)
    return model.to(device).eval()


def _unpack_all(model: nn.Module) -> None:
    shared: dict[int, nn.Parameter] = {}  # one tensor per tied matrix
    for name, module in list(model.named_modules()):
        if not isinstance(module, PackedLinear | PackedEmbedding):
            continue
        key = module.weight_packed.data_ptr()
        if key not in shared:
            shared[key] = nn.Parameter(module.weight.detach().contiguous(), requires_grad=False)
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, module.unpacked(shared[key]))


def _packed_key(key: str) -> bool:
    return key.endswith(("weight_packed", "weight_scale", "weight_shape"))


def _swap(
    model: nn.Module,
    name: str,
    state: dict[str, torch.Tensor],
    fmt: QuantFormat,
    dtype: torch.dtype,
) -> PackedWeight:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, leaf)
    try:
        args = (
            state[f"{name}.weight_packed"],
            state[f"{name}.weight_scale"],
            state[f"{name}.weight_shape"],
            fmt,
            dtype,
        )
    except KeyError as exc:
        raise QuantizedFolderError(
            f"model.safetensors has no {exc.args[0]}; re-run batchmt quantize"
        ) from None
    new: PackedWeight
    if isinstance(old, nn.Embedding):
        new = PackedEmbedding(*args, padding_idx=old.padding_idx)
    else:
        new = PackedLinear(*args, bias=state.get(f"{name}.bias", getattr(old, "bias", None)))
    setattr(parent, leaf, new)
    return new


def _swap_alias(
    model: nn.Module, name: str, first: PackedWeight | None, fmt: QuantFormat, dtype: torch.dtype
) -> PackedWeight:
    assert first is not None
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, leaf)
    args = (first.weight_packed, first.weight_scale, first.weight_shape, fmt, dtype)
    new: PackedWeight
    if isinstance(old, nn.Embedding):
        new = PackedEmbedding(*args, padding_idx=old.padding_idx)
    else:
        bias = old.bias.detach() if getattr(old, "bias", None) is not None else None
        new = PackedLinear(*args, bias=bias)
    setattr(parent, leaf, new)
    return new
