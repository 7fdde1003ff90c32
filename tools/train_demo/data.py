"""The demo corpora: Multi30k (en-de), Tatoeba and newstest2017 (zh-en), split for training."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
ZH_TEST_SIZE = 1000  # held-out Tatoeba pairs, never trained on
ZH_VAL_SIZE = 500  # selection split carved from the rest

Pairs = tuple[list[str], list[str]]


@dataclass
class Splits:
    """Sentence pairs per split; ``tests`` maps a report name to its (source, reference)."""

    train: Pairs
    val: Pairs
    tests: dict[str, Pairs]


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(
            f"data file {path} is missing; pass --data-dir pointing at shared/data "
            "(see shared/data/README.md)"
        )
    return path.read_text(encoding="utf-8").rstrip("\n").split("\n")


def _read_pair(prefix: Path, src: str, tgt: str) -> Pairs:
    sources = _read_lines(prefix.with_name(f"{prefix.name}.{src}"))
    targets = _read_lines(prefix.with_name(f"{prefix.name}.{tgt}"))
    if len(sources) != len(targets):
        raise ValueError(f"{prefix}.{{{src},{tgt}}} have different line counts")
    return sources, targets


def split_tatoeba(sources: list[str], targets: list[str], seed: int) -> tuple[Pairs, Pairs, Pairs]:
    """Fixed-seed test/val/train split of Tatoeba.

    Tatoeba repeats sentences with alternative translations, so training pairs whose source
    also occurs in the test or val split are dropped: otherwise "held-out" would be memorised.
    """
    order = list(range(len(sources)))
    random.Random(seed).shuffle(order)
    test_idx = order[:ZH_TEST_SIZE]
    val_idx = order[ZH_TEST_SIZE : ZH_TEST_SIZE + ZH_VAL_SIZE]
    held_sources = {sources[i] for i in test_idx + val_idx}
    train_idx = [i for i in order[ZH_TEST_SIZE + ZH_VAL_SIZE :] if sources[i] not in held_sources]

    def pick(idx: list[int]) -> Pairs:
        return [sources[i] for i in idx], [targets[i] for i in idx]

    return pick(train_idx), pick(val_idx), pick(test_idx)


def load_splits(pair: str, data_dir: Path, seed: int = 1) -> Splits:
    """The train/val/test splits of a demo pair (shared with benchmarks/quantization.py)."""
    if pair == "en-de":
        base = data_dir / "multi30k"
        return Splits(
            train=_read_pair(base / "train", "en", "de"),
            val=_read_pair(base / "val", "en", "de"),
            tests={"test_2016_flickr": _read_pair(base / "test_2016_flickr", "en", "de")},
        )
    if pair == "zh-en":
        zh = _read_lines(data_dir / "tatoeba_zh_en" / "cmn.zh")
        en = _read_lines(data_dir / "tatoeba_zh_en" / "cmn.en")
        train, val, test = split_tatoeba(zh, en, seed)
        wmt = _read_pair(data_dir / "wmt_zh_en" / "newstest2017.zh-en", "zh", "en")
        return Splits(train, val, {"tatoeba_heldout": test, "newstest2017": wmt})
    raise ValueError(f"unknown pair {pair!r}; choose one of: en-de, zh-en")


def limited(splits: Splits, n: int | None) -> Splits:
    if n is None:
        return splits
    tests = {k: (s[:n], r[:n]) for k, (s, r) in splits.tests.items()}
    return Splits(splits.train, (splits.val[0][:n], splits.val[1][:n]), tests)
