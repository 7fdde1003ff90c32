"""What a family quantizes, in units that always get one format together.

Encoder-decoder (Marian, M2M100, NLLB): every attention projection and feed-forward layer is
its own unit, and so is the token embedding matrix (shared by the encoder, the decoder and
the output head in these families): at a quarter of the demo model's weights, a budget of
0.10x fp32 cannot be met with it in 16 bits. Decoder-only (HunYuanDenseV1, Llama naming):
q/k/v form one unit and gate/up one, because vLLM fuses them into one matmul that takes a
single scheme; the embeddings and the output head stay in the checkpoint's dtype, as in the
HY-MT write-up, and so that vLLM's compressed-tensors loader takes the folder. Norms, biases
and positional tables are never quantized (small, and they scale every activation).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from batchmt.workers.engines.quantize import CAUSAL_LINEARS, SEQ2SEQ_LINEARS

# Decoder-only layers that vLLM fuses (one scheme for the fused matmul).
_FUSED = {
    "q_proj": "qkv_proj",
    "k_proj": "qkv_proj",
    "v_proj": "qkv_proj",
    "gate_proj": "gate_up_proj",
    "up_proj": "gate_up_proj",
}
# Names of the token-embedding modules of the encoder-decoder families.
_EMBEDDING_NAMES = ("shared", "embed_tokens")


@dataclass
class Unit:
    """Tensors that are quantized together: `modules` are the qualified names of the
    Linear / Embedding layers (tied aliases of one matrix count once, in `aliases`)."""

    name: str
    role: str  # attention | ffn | embedding
    modules: list[str]
    shapes: list[tuple[int, int]]
    aliases: dict[str, str]  # alias module name -> the module that stores the matrix

    @property
    def params(self) -> int:
        return sum(r * c for r, c in self.shapes)


def _role(leaf: str) -> str:
    return "attention" if leaf in ("q_proj", "k_proj", "v_proj", "out_proj", "o_proj") else "ffn"


def family_units(model: nn.Module, family: str) -> list[Unit]:
    """The units of `model` (family "seq2seq" or "causal"), in module order."""
    if family == "causal":
        return list(_causal_units(model))
    return list(_seq2seq_units(model))


def _seq2seq_units(model: nn.Module) -> Iterator[Unit]:
    owners: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        is_embedding = isinstance(module, nn.Embedding) and leaf in _EMBEDDING_NAMES
        is_head = isinstance(module, nn.Linear) and leaf == "lm_head"
        if is_embedding or is_head:
            key = module.weight.data_ptr()
            if key in owners:
                aliases[name] = owners[key]
            else:
                owners[key] = name
    heads = {n for n in owners.values() if n.rsplit(".", 1)[-1] == "lm_head"}
    for owner in owners.values():
        if owner in heads:
            continue  # an untied output head: kept, it decides every argmax
        weight: torch.Tensor = model.get_submodule(owner).weight  # type: ignore[assignment]
        yield Unit(
            name=owner,
            role="embedding",
            modules=[owner],
            shapes=[(int(weight.shape[0]), int(weight.shape[1]))],
            aliases={a: o for a, o in aliases.items() if o == owner},
        )
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, nn.Linear) and leaf in SEQ2SEQ_LINEARS:
            yield Unit(name, _role(leaf), [name], [tuple(module.weight.shape)], {})  # type: ignore[list-item]


def _causal_units(model: nn.Module) -> Iterator[Unit]:
    grouped: dict[str, Unit] = {}
    for name, module in model.named_modules():
        parent, _, leaf = name.rpartition(".")
        if not isinstance(module, nn.Linear) or leaf not in CAUSAL_LINEARS:
            continue
        key = f"{parent}.{_FUSED.get(leaf, leaf)}"
        unit = grouped.setdefault(key, Unit(key, _role(leaf), [], [], {}))
        unit.modules.append(name)
        unit.shapes.append(tuple(module.weight.shape))  # type: ignore[arg-type]
    yield from grouped.values()


def weight_of(model: nn.Module, name: str) -> torch.Tensor:
    """The weight matrix of the Linear / Embedding layer `name`."""
    weight = model.get_submodule(name).weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name} has no weight tensor")
    return weight
