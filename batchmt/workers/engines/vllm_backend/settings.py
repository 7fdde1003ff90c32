"""How a replica's vLLM engine is built and asked: engine arguments from the replica's
device and resources, and sampling parameters from the job's decoding settings.

One engine per replica, in the replica's own process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`):
Ray already gave the process its GPU (`CUDA_VISIBLE_DEVICES`) or its CPU slots, and a killed
replica takes its engine with it, so nothing outlives the actor that the driver replaced.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch

from batchmt.pipeline.spec import DecodingSpec
from batchmt.workers.engines.base import EngineConfig, EngineLoadError
from batchmt.workers.engines.causal import compute_dtype

GIB = 2**30
# Share of the replica's GPU that vLLM may take (weights, KV cache, activations): vLLM's
# own default, less what the constrained search's transformers model needs if a glossary
# row misses a term (reserved up front: vLLM never gives memory back).
_GPU_SHARE = 0.9
_CONSTRAINED_HEADROOM = 2 * GIB
# The smallest GPU share worth starting vLLM with; below it the model barely fits.
_MIN_GPU_SHARE = 0.3
# CPU replicas: the KV cache takes this share of the host RAM that falls to the replica
# (its CPU slots' share of the machine), between these bounds.
_CPU_KV_SHARE = 0.25
_CPU_KV_MIN_GIB = 1
_CPU_KV_MAX_GIB = 16


def prepare_process(device: torch.device) -> None:
    """Environment vLLM reads when its engine starts; a user's own setting wins."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # vLLM 0.32's AOT compile cache cannot store a model run through its transformers
    # backend (HunYuanDenseV1: "Can't pickle ... HunYuanDenseV1Model.forward"), so every
    # replica start would compile again (a script's `LLM(...)` on the race model, 2 cores:
    # 25-49 s every start, 4-8 s eager). Without it a replica starts in 20-31 s against
    # 15-19 s eager.
    os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
    if device.type == "cpu":
        # vLLM binds OpenMP threads to whole NUMA nodes by default; several replicas on one
        # machine would then share every core. Each replica keeps the thread count the
        # actor set for its CPU slots instead (workers/process/devices.py).
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cpu_kv_gib()))


def cpu_kv_gib() -> int:
    """KV-cache GiB for a CPU replica: a share of the RAM its CPU slots stand for."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return _CPU_KV_MIN_GIB
    slots = torch.get_num_threads() / max(1, os.cpu_count() or 1)
    share = int(total * min(1.0, slots) * _CPU_KV_SHARE / GIB)
    return max(_CPU_KV_MIN_GIB, min(_CPU_KV_MAX_GIB, share))


def gpu_share(weights_bytes: int, device: torch.device) -> float:
    """`gpu_memory_utilization` for the replica's one GPU, leaving the constrained model
    room beside vLLM."""
    _free, total = torch.cuda.mem_get_info(device)
    share = _GPU_SHARE - (weights_bytes + _CONSTRAINED_HEADROOM) / total
    if share < _MIN_GPU_SHARE:
        raise EngineLoadError(
            f"the GPU holds {total / GIB:.1f} GiB: too little for vLLM and the constrained "
            "search's second copy of the weights; use a smaller or quantized model "
            "(model.quantization fp8 / gptq-int4) or model.backend=transformers"
        )
    return round(share, 3)


# Weight bits vLLM's compressed-tensors kernels take (WNA16: Marlin on GPUs), and the
# subset its CPU kernel takes (vLLM 0.32's cpu_gemm_wna16: 4-bit, bf16 activations only).
_VLLM_WEIGHT_BITS = {4, 8}
_VLLM_CPU_WEIGHT_BITS = {4}


def packed_weight_bits(hf_config: Any) -> set[int]:
    """The weight bit widths of a compressed-tensors folder (`batchmt quantize` writes one
    per format); empty for any other checkpoint."""
    quantization = getattr(hf_config, "quantization_config", None)
    if not isinstance(quantization, dict):
        return set()
    if quantization.get("quant_method") != "compressed-tensors":
        return set()
    groups = quantization.get("config_groups") or {}
    return {
        int(group["weights"]["num_bits"])
        for group in groups.values()
        if isinstance(group, dict) and isinstance(group.get("weights"), dict)
    }


def packed_folder_problem(config: EngineConfig, hf_config: Any, device: torch.device) -> str | None:
    """Why vLLM cannot compute this `batchmt quantize` folder here, or None when it can
    (or the checkpoint is not such a folder)."""
    bits = packed_weight_bits(hf_config)
    if not bits:
        return None
    where = "GPU" if device.type == "cuda" else "CPU"
    allowed = _VLLM_WEIGHT_BITS if device.type == "cuda" else _VLLM_CPU_WEIGHT_BITS
    unserved = sorted(bits - allowed)
    if unserved:
        shown = ", ".join(f"int{b}" for b in unserved)
        formats = ", ".join(f"int{b}" for b in sorted(allowed))
        return (
            f"{config.model_name!r} holds {shown} layers, which vLLM cannot compute on "
            f"{where} (its kernels take {formats}); quantize again with "
            f"quantize.formats: [{formats}], or run the folder with model.backend=transformers"
        )
    if device.type == "cpu" and config.model.dtype not in ("auto", "bfloat16"):
        return (
            f"vLLM computes 4-bit weights on CPU in bfloat16 only; {config.model_name!r} was "
            f"asked for {config.model.dtype}: set model.dtype=auto (or bfloat16), or run the "
            "folder with model.backend=transformers"
        )
    return None


def check_packed_folder(config: EngineConfig, hf_config: Any, device: torch.device) -> None:
    """Refuse, before vLLM starts, a quantized folder whose layers vLLM has no kernel for
    here (it would fail at load, or on CPU at the first shard, with a kernel error)."""
    problem = packed_folder_problem(config, hf_config, device)
    if problem is not None:
        raise EngineLoadError(problem)


def vllm_dtype(config: EngineConfig, hf_config: Any, device: torch.device) -> str:
    """The compute dtype vLLM is started with: the engine's usual one, except that a
    packed 4-bit folder on CPU computes in bfloat16 (the only kind its kernel takes)."""
    if device.type == "cpu" and packed_weight_bits(hf_config):
        return "bfloat16"
    return str(compute_dtype(config, device)).removeprefix("torch.")


def engine_args(
    config: EngineConfig,
    model_path: str,
    device: torch.device,
    *,
    max_model_len: int,
    weights_bytes: int,
    hf_config: Any = None,
    eager: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM` on this replica; `eager` skips the graph compile."""
    model = config.model
    if model.quantization == "int8":
        raise EngineLoadError(
            "model.quantization=int8 quantizes on load, which is the transformers and "
            "CTranslate2 path; with model.backend=vllm load a released fp8 or gptq-int4 "
            "checkpoint, or use quantization none"
        )
    args: dict[str, Any] = {
        "model": model_path,
        "tokenizer": model_path,
        "trust_remote_code": model.trust_remote_code,
        "revision": model.revision,
        "seed": config.decoding.seed,
        "max_model_len": max_model_len,
        "disable_log_stats": True,
        # Every request of a shard shares the template's prefix: computed once.
        "enable_prefix_caching": True,
    }
    if model.quantization == "none":
        args["dtype"] = vllm_dtype(config, hf_config, device)
    if model.quantization == "gptq-int4" and device.type == "cuda":
        args["quantization"] = "gptq_marlin"  # HY-MT's Int4 release serves with Marlin
    if device.type == "cuda":
        args["gpu_memory_utilization"] = gpu_share(weights_bytes, device)
    if eager:
        args["enforce_eager"] = True
    return args


def compile_blocker(device: torch.device) -> str | None:
    """Why vLLM cannot compile the model's graph on this replica, or None when it can. On
    CPU, torch's inductor builds C++ kernels: it needs a compiler (its own search: `CXX`,
    else g++); without one vLLM would fail at load."""
    if device.type != "cpu":
        return None
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as exc:  # noqa: BLE001 - torch's InvalidCxxCompiler, or a moved API
        return (
            f"no C++ compiler for torch's graph compile on this machine ({exc}); install "
            "g++ (or set CXX) to decode faster, or set model.vllm_compile=false"
        )
    return None


def eager_config(vllm_config: Any) -> Any:
    """A copy of the engine's vLLM config with graph compilation off: the config the
    constrained search's transformers model is built under. vLLM decorates the model classes
    it runs (in place, for the whole process), and each instance compiles or not by the
    config current when it is built; ours runs its own shapes, eagerly."""
    from vllm.config import CompilationMode

    eager = copy.copy(vllm_config)
    eager.compilation_config = copy.copy(vllm_config.compilation_config)
    eager.compilation_config.mode = CompilationMode.NONE
    return eager


def sampling_kwargs(
    decoding: DecodingSpec, max_tokens: int, stop_ids: list[int], device_type: str
) -> dict[str, Any]:
    """One row's `SamplingParams`: greedy, or HY-MT's recommended sampling (the spec's
    defaults); the sampled token's log-prob for QE; no detokenizing (done once, here)."""
    kwargs: dict[str, Any] = {
        "max_tokens": max_tokens,
        "stop_token_ids": stop_ids,
        "logprobs": 0,
        "detokenize": False,
        "skip_special_tokens": True,
    }
    if decoding.do_sample:
        kwargs.update(
            temperature=decoding.temperature,
            top_k=decoding.top_k if decoding.top_k > 0 else -1,
            top_p=decoding.top_p,
            repetition_penalty=decoding.repetition_penalty,
        )
        if device_type == "cuda":
            # Per request: a row samples the same answer whatever batch it lands in. Not on
            # CPU: vLLM 0.32's CPU runner fails such requests ("CPU Generator does not use
            # offset"); there the engine's seed (decoding.seed) makes a run repeatable.
            kwargs["seed"] = decoding.seed
    else:
        kwargs["temperature"] = 0.0
    return kwargs
