"""Teacher-forced calibration batches: the model reads the source and the reference, and the
positions that predict reference tokens are the ones whose output distributions count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]  # keyword arguments of the model's forward
    mask: torch.Tensor  # [batch, positions] True where the logits predict a reference token


def seq2seq_batches(
    tokenizer: Any, pairs: Sequence[tuple[str, str]], batch_size: int, max_tokens: int = 128
) -> list[Batch]:
    batches = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        enc = tokenizer(
            [s for s, _ in chunk],
            text_target=[r for _, r in chunk],
            padding=True,
            truncation=True,
            max_length=max_tokens,
            return_tensors="pt",
        )
        labels = enc["labels"]
        mask = labels != tokenizer.pad_token_id
        labels = labels.masked_fill(~mask, -100)
        batches.append(
            Batch(
                {
                    "input_ids": enc["input_ids"],
                    "attention_mask": enc["attention_mask"],
                    "labels": labels,
                },
                mask,
            )
        )
    return batches


def causal_batches(
    tokenizer: Any,
    prompts: Sequence[str],
    references: Sequence[str],
    batch_size: int,
    max_tokens: int = 256,
) -> list[Batch]:
    """Each row: the chat prompt (as the engine sends it) followed by the reference and EOS."""
    batches = []
    rows = []
    for prompt, reference in zip(prompts, references):
        chat = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        head = tokenizer(str(chat), add_special_tokens=False)["input_ids"]
        tail = tokenizer(reference, add_special_tokens=False)["input_ids"] + [
            tokenizer.eos_token_id
        ]
        ids = (head + tail)[:max_tokens]
        rows.append((ids, len(head)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.bool)
        for i, (ids, head) in enumerate(chunk):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
            # Logits at position t predict token t+1: the answer's tokens start at `head`.
            mask[i, head - 1 : len(ids) - 1] = True
        batches.append(Batch({"input_ids": input_ids, "attention_mask": attention}, mask))
    return batches
