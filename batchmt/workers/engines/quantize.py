"""INT8 model replicas for both engine families.

``quantize_model(model, mode, device, linears)`` is the one entry point; ``QUANTIZATION_POLICY``
is the one place that says what gets quantized and how; each family names its layers
(``SEQ2SEQ_LINEARS``, ``CAUSAL_LINEARS``). ``weight_bytes(model)`` reports the memory a
replica's weights take, quantized buffers included.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ALLOWED_MODES = ("none", "int8")

# Leaf names of the nn.Linear layers that are quantized, per family.
# Encoder-decoder (Marian / BART / M2M100 naming): attention projections and the FFN.
SEQ2SEQ_LINEARS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
# Decoder-only (HunYuan / Llama naming): attention q/k/v/o and the gated MLP. HunYuan's
# per-head query/key RMSNorms are not Linear layers and stay in higher precision.
CAUSAL_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

QUANTIZATION_POLICY = """\
mode "none": the model as given, moved to the device, eval mode.

mode "int8": only the attention projections (q/k/v and the output projection, self- and
cross-attention) and the feed-forward layers (fc1/fc2, or gate/up/down) are quantized: these
hold most of the compute and, apart from the vocabulary matrix, most of the weights.
  weights      int8, symmetric, one scale per output channel (row), computed once
  activations  int8, symmetric, scales computed at run time from each call's input
Stay in higher precision (never quantized): token embeddings, positional embeddings, every
LayerNorm, biases, and the output projection (lm_head; tied to the embeddings in Marian).
The output projection decides the argmax over the vocabulary, where int8 error moves the
chosen token; the embeddings are lookups and cost no matmul.

Backends, picked by device:
  cpu   torch.ao dynamic quantization (fbgemm/x86 kernels), per-channel weight scales; its
        activation scale is per call (per tensor), not per token. Measured fastest on CPU:
        torch._int_mm and torchao's int8 path have no fast CPU kernel (30-60x slower than
        fp32 on 2 AVX2 cores). Higher precision = fp32.
  cuda  W8A8Linear on torch._int_mm (cuBLASLt int8), per-token activation scales. A call
        with M <= 16 rows or K, N not multiples of 8 falls back to a matmul with the
        dequantized weight (W8A16). Higher precision = the model's dtype, with fp32 models
        cast to bf16 so that the replica fits in < 40 % of its fp32 weight memory.
"""


def quantize_model(
    model: nn.Module, mode: str, device: torch.device, linears: Sequence[str] = SEQ2SEQ_LINEARS
) -> nn.Module:
    """Return ``model`` on ``device`` in eval mode, quantized as ``mode`` and the policy say;
    ``linears`` are the leaf names of the family's layers to quantize.

    The model is changed in place (and returned): replicas are built per actor, so copying
    would only double peak memory.
    """
    if mode not in ALLOWED_MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; allowed: {', '.join(ALLOWED_MODES)}")
    device = torch.device(device)
    model = model.to(device).eval()
    if mode == "none":
        return model
    if device.type == "cpu":
        return _quantize_cpu_dynamic(model, linears)
    if device.type == "cuda":
        if next(model.parameters()).dtype == torch.float32:
            model = model.to(torch.bfloat16)
        return quantize_w8a8(model, linears)
    raise ValueError(
        f"int8 quantization is not available on device {device.type!r}; use a cpu or cuda "
        "device, or quantization mode 'none'"
    )


def target_linears(
    model: nn.Module, linears: Sequence[str] = SEQ2SEQ_LINEARS
) -> Iterator[tuple[str, nn.Linear]]:
    """The nn.Linear layers the policy quantizes (by leaf name), as (qualified name, module)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in linears:
            yield name, module


def _quantize_cpu_dynamic(model: nn.Module, linears: Sequence[str]) -> nn.Module:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if next(model.parameters()).dtype != torch.float32:
        # fbgemm's dynamic int8 kernels take fp32 activations only.
        model = model.float()
    names = {name: per_channel_dynamic_qconfig for name, _ in target_linears(model, linears)}
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, whose int8 path has no fast
        # CPU kernel yet; keep using the fbgemm kernels until that changes.
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, qconfig_spec=names, dtype=torch.qint8, inplace=True)


class W8A8Linear(nn.Module):
    """int8 weight x int8 activation Linear on ``torch._int_mm``.

    ``y = (q(x) @ q(W).T) * s_x * s_w + b`` with per-row (token) activation scales ``s_x`` and
    per-output-channel weight scales ``s_w``. Runs on any device ``torch._int_mm`` supports
    (the CPU kernel is slow: CPU serving uses the fbgemm backend, CPU tests use this path).
    """

    qweight: torch.Tensor
    weight_scale: torch.Tensor

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp_min(1e-8) / 127.0
        qweight = torch.round(weight / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.register_buffer("qweight", qweight)
        self.register_buffer("weight_scale", scale)
        bias = linear.bias.detach().clone() if linear.bias is not None else None
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, w8a8"

    def _int_mm_ok(self, rows: int) -> bool:
        # cuBLASLt int8 needs more than 16 rows and K, N multiples of 8.
        return rows > 16 and self.in_features % 8 == 0 and self.out_features % 8 == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        if self._int_mm_ok(x2.shape[0]):
            xf = x2.float()
            s_x = xf.abs().amax(dim=1, keepdim=True).clamp_min(1e-8) / 127.0
            qx = torch.round(xf / s_x).clamp_(-127, 127).to(torch.int8)
            acc = torch._int_mm(qx, self.qweight.t())
            y = (acc.float() * s_x * self.weight_scale).to(x.dtype)
            if self.bias is not None:
                y = y + self.bias.to(x.dtype)
        else:
            weight = (self.qweight.float() * self.weight_scale[:, None]).to(x.dtype)
            bias = self.bias.to(x.dtype) if self.bias is not None else None
            y = F.linear(x2, weight, bias)
        return y.reshape(*x.shape[:-1], self.out_features)


def quantize_w8a8(model: nn.Module, linears: Sequence[str] = SEQ2SEQ_LINEARS) -> nn.Module:
    """Swap the policy's Linear layers for ``W8A8Linear`` in place (device-independent)."""
    for name, linear in list(target_linears(model, linears)):
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        replacement = W8A8Linear(linear).to(linear.weight.device)
        setattr(parent, leaf, replacement)
    return model


def weight_bytes(model: nn.Module) -> int:
    """Bytes of parameters and buffers (tied tensors once), quantized packed weights included."""
    seen: set[int] = set()
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    for module in model.modules():
        total += _packed_bytes(module)
    return total


def _packed_bytes(module: nn.Module) -> int:
    """torch.ao dynamic Linear keeps its weight in an opaque packed object, not a buffer."""
    packed = getattr(module, "_packed_params", None)
    if packed is None or not hasattr(packed, "_weight_bias"):
        return 0
    qweight, bias = packed._weight_bias()
    total = qweight.numel() * qweight.element_size()
    if qweight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        total += qweight.q_per_channel_scales().numel() * 8  # float64 scales
        total += qweight.q_per_channel_zero_points().numel() * 8  # int64 zero points
    if bias is not None:
        total += bias.numel() * bias.element_size()
    return total
