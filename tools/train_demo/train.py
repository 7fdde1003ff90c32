"""The training run: loop, inverse-sqrt schedule, validation, checkpoint averaging, selection."""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sacrebleu
import torch
import torch.nn.functional as F

from tools.train_demo.common import describe_device, log, recipe_args, resolve_device
from tools.train_demo.data import Splits
from tools.train_demo.evaluate import translate
from tools.train_demo.model import count_params
from tools.train_demo.vocabulary import encode_pairs, token_batches


@dataclass
class TrainState:
    """Everything ``--resume`` needs besides the tokenizer files in the work dir."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0  # batches of ``epoch`` already trained (stopped mid-epoch)
    train_seconds: float = 0.0
    history: list[dict[str, Any]] | None = None
    best: list[tuple[float, int, dict[str, torch.Tensor]]] | None = None  # (bleu, step, sd)
    last: list[tuple[float, int, dict[str, torch.Tensor]]] | None = None


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).float() for k, v in model.state_dict().items()}


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k] for s in states]).mean(0) for k in states[0]}


def inverse_sqrt(warmup: int) -> Any:
    def factor(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup, math.sqrt(warmup / step))

    return factor


class Trainer:
    """One training run: the loop, periodic validation, checkpoint keeping and state saving."""

    def __init__(self, args: argparse.Namespace, model: Any, tokenizer: Any, splits: Splits):
        self.args = args
        self.device = resolve_device(args.device)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.splits = splits
        self.pad = tokenizer.pad_token_id
        enc = encode_pairs(tokenizer, splits.train, args.max_len)
        # Whole training set lives on the device: a batch is one gather, no host copies.
        self.src = enc.src.to(self.device)
        self.tgt = enc.tgt.to(self.device)
        self.enc = enc
        params = [p for p in model.parameters() if p.requires_grad]
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.Adam(
            params, lr=args.lr, betas=(0.9, 0.98), eps=1e-9, fused=fused
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, inverse_sqrt(args.warmup)
        )
        self.amp = self.device.type == "cuda" and args.amp == "bf16"
        self.state = TrainState(history=[], best=[], last=[])
        self.state_path = Path(args.work_dir) / "train_state.pt"
        log(
            f"train pairs {len(enc.src)} (of {len(splits.train[0])}), val {len(splits.val[0])}, "
            f"params {count_params(model) / 1e6:.2f}M, device {describe_device(self.device)}"
        )

    # -- state ---------------------------------------------------------------
    def save_state(self) -> None:
        payload = {
            "model": cpu_state_dict(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "state": self.state.__dict__,
            "recipe": recipe_args(self.args),
            "torch_rng": torch.get_rng_state(),
        }
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, self.state_path)  # a crash mid-write never leaves a broken state

    def load_state(self) -> None:
        payload = torch.load(self.state_path, map_location="cpu", weights_only=False)
        if payload["recipe"] != recipe_args(self.args):
            changed = {
                k: (payload["recipe"].get(k), v)
                for k, v in recipe_args(self.args).items()
                if payload["recipe"].get(k) != v
            }
            log(f"warning: resuming with changed recipe arguments (saved, now): {changed}")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.state = TrainState(**payload["state"])
        torch.set_rng_state(payload["torch_rng"])
        log(f"resumed at epoch {self.state.epoch + 1}, step {self.state.step}")

    # -- loop ----------------------------------------------------------------
    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
        rows = torch.from_numpy(idx).to(self.device)
        src_len = int(self.enc.src_len[idx].max())
        tgt_len = int(self.enc.tgt_len[idx].max())
        src = self.src.index_select(0, rows)[:, :src_len]
        tgt = self.tgt.index_select(0, rows)[:, :tgt_len]
        # Decoder input is <pad>(=start) + target; labels are target (ending in </s>).
        start = torch.full((len(idx), 1), self.pad, dtype=torch.long, device=self.device)
        dec_in = torch.cat([start, tgt[:, :-1]], dim=1)
        labels = tgt.masked_fill(tgt.eq(self.pad), -100)
        return src, dec_in, labels

    def train_step(self, idx: np.ndarray) -> torch.Tensor:
        src, dec_in, labels = self.batch(idx)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(
                input_ids=src,
                attention_mask=src.ne(self.pad),
                # No decoder mask needed: padding sits right of the real tokens and the
                # causal mask keeps it from influencing them; its labels are ignored.
                decoder_input_ids=dec_in,
            ).logits
        loss = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)),
            labels.reshape(-1),
            ignore_index=-100,
            label_smoothing=self.args.label_smoothing,
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def validate(self) -> float:
        hyps = translate(
            self.model,
            self.tokenizer,
            self.splits.val[0],
            num_beams=1,
            batch_size=self.args.eval_batch_size,
            device=self.device,
        )
        self.model.train()
        return sacrebleu.corpus_bleu(hyps, [self.splits.val[1]]).score

    def keep_checkpoint(self, bleu: float) -> None:
        st = self.state
        assert st.best is not None and st.last is not None
        entry = (bleu, st.step, cpu_state_dict(self.model))
        st.last = [*st.last, entry][-self.args.average :]
        st.best = sorted([*st.best, entry], key=lambda e: -e[0])[: self.args.average]

    def run(self) -> None:
        args, st = self.args, self.state
        started = time.monotonic()
        seconds_before = st.train_seconds  # earlier invocations (resume)
        budget = args.max_minutes * 60
        last_log = last_save = started
        tokens_since = 0
        loss_sum = torch.zeros((), device=self.device)  # summed on device: no sync per step
        loss_steps = 0
        self.model.train()
        stop = False
        while st.epoch < args.epochs and not stop:
            # Batch order is a function of (seed, epoch): a resumed run skips what was done.
            rng = np.random.default_rng(args.seed * 1000 + st.epoch)
            batches = token_batches(self.enc, args.max_tokens, rng)
            for idx in batches[st.batches_done :]:
                loss_sum += self.train_step(idx)
                loss_steps += 1
                tokens_since += int(self.enc.tgt_len[idx].sum())
                st.step += 1
                st.batches_done += 1
                now = time.monotonic()
                if now - last_log >= args.log_seconds:
                    log(
                        f"epoch {st.epoch + 1} step {st.step} "
                        f"loss {loss_sum.item() / max(loss_steps, 1):.3f} "
                        f"lr {self.scheduler.get_last_lr()[0]:.2e} "
                        f"tgt tok/s {tokens_since / (now - last_log):.0f}"
                    )
                    last_log, tokens_since = now, 0
                    loss_sum.zero_()
                    loss_steps = 0
                if now - started >= budget:
                    stop = True
                    break
            finished = st.batches_done >= len(batches)
            self.end_of_epoch(partial=not finished)
            if finished:
                st.epoch += 1
                st.batches_done = 0
            if not stop and time.monotonic() - last_save >= args.save_minutes * 60:
                st.train_seconds = seconds_before + time.monotonic() - started
                self.save_state()
                last_save = time.monotonic()
        st.train_seconds = seconds_before + time.monotonic() - started
        self.save_state()
        if stop:
            log(f"time budget of {args.max_minutes} min reached; stopped cleanly")

    def end_of_epoch(self, partial: bool) -> None:
        st = self.state
        assert st.history is not None
        bleu = self.validate()
        self.keep_checkpoint(bleu)
        st.history.append({"epoch": st.epoch + 1, "step": st.step, "val_bleu": round(bleu, 2)})
        tag = " (partial epoch)" if partial else ""
        log(f"epoch {st.epoch + 1}{tag} step {st.step}: val BLEU (greedy) {bleu:.2f}")


def select_weights(trainer: Trainer) -> tuple[str, float]:
    """Pick the best of: best single checkpoint, average of best N, average of last N.

    All candidates are judged by greedy BLEU on the validation split, never on test.
    """
    st = trainer.state
    assert st.best and st.last is not None
    candidates = {"best": st.best[0][2]}
    if len(st.best) > 1:
        candidates[f"avg_best{len(st.best)}"] = average_state_dicts([e[2] for e in st.best])
    if len(st.last) > 1:
        candidates[f"avg_last{len(st.last)}"] = average_state_dicts([e[2] for e in st.last])
    scores: dict[str, float] = {}
    for name, sd in candidates.items():
        if name == "best":
            scores[name] = st.best[0][0]
            continue
        trainer.model.load_state_dict(sd)
        scores[name] = trainer.validate()
    chosen = max(scores, key=lambda k: scores[k])
    trainer.model.load_state_dict(candidates[chosen])
    log("selection on val (greedy BLEU): " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    return chosen, scores[chosen]
