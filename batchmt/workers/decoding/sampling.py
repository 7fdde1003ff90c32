"""One hypothesis per row: greedy or sampled decoding, finished rows leaving the batch.

Beam search (with or without terms) is `search.py`; this loop is for `num_beams=1` and
`do_sample=true` batches without terms, where a beam's bookkeeping would only cost time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from batchmt.pipeline.spec import DecodingSpec
from batchmt.workers.decoding.search import DecoderStep

#: choose(history, logprobs) -> one token per live row.
Chooser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def decode_rows(
    step: DecoderStep,
    prompt_ids: torch.Tensor,
    bounds: Sequence[int],
    stop_ids: set[int],
    choose: Chooser,
) -> tuple[list[list[int]], list[float]]:
    """One hypothesis per row (greedy or sampled); a row leaves the batch when it stops.

    `choose(history, logprobs)` picks one token per live row; history is prompt + output so
    far (what a repetition penalty looks at). Returned with each row's tokens: the model's
    mean log-prob per chosen token, the stop token included (QE's confidence, on the same
    scale as the beam search's and vLLM's).
    """
    outputs: list[list[int]] = [[] for _ in bounds]
    totals = [0.0] * len(bounds)
    counts = [0] * len(bounds)
    live = list(range(len(bounds)))
    history = prompt_ids
    logprobs = step(None)
    while live:
        tokens = choose(history, logprobs)
        chosen_logprobs = logprobs.gather(1, tokens[:, None]).squeeze(1).tolist()
        keep: list[int] = []
        for h, token in enumerate(tokens.tolist()):
            row = live[h]
            totals[row] += chosen_logprobs[h]
            counts[row] += 1
            if token in stop_ids:
                continue
            outputs[row].append(token)
            if len(outputs[row]) < bounds[row]:
                keep.append(h)
        if not keep:
            break
        index = torch.tensor(keep, device=tokens.device)
        live = [live[h] for h in keep]
        chosen = tokens.index_select(0, index)
        history = torch.cat([history.index_select(0, index), chosen[:, None]], dim=1)
        step.reorder(index)
        logprobs = step(chosen)
    return outputs, [t / max(1, n) for t, n in zip(totals, counts, strict=True)]


def greedy(_history: torch.Tensor, logprobs: torch.Tensor) -> torch.Tensor:
    return logprobs.argmax(-1)


def sampler(decoding: DecodingSpec, device: torch.device) -> Chooser:
    """HY-MT's recommended sampling (the spec's defaults), seeded: a batch is reproducible."""
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if decoding.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(decoding.repetition_penalty))
    processors.append(TemperatureLogitsWarper(decoding.temperature))
    if decoding.top_k > 0:
        processors.append(TopKLogitsWarper(decoding.top_k))
    if decoding.top_p < 1.0:
        processors.append(TopPLogitsWarper(decoding.top_p))
    generator = torch.Generator(device=device).manual_seed(decoding.seed)

    def choose(history: torch.Tensor, logprobs: torch.Tensor) -> torch.Tensor:
        scores = processors(history, logprobs)  # type: ignore[arg-type]
        probs = scores.softmax(-1)
        return torch.multinomial(probs, 1, generator=generator).view(-1)

    return choose
