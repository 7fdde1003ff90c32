"""A seconds-long training run end to end: save, reload as users do, id conventions, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from tools.train_demo.cli import main
from tools.train_demo.data import split_tatoeba

EN = [
    "A man rides a red bike.",
    "Two dogs play in the green grass.",
    "A woman is reading a book.",
    "Children run on the beach.",
    "A black cat sleeps on a chair.",
    "The man in a blue shirt is cooking.",
]
DE = [
    "Ein Mann fährt ein rotes Fahrrad.",
    "Zwei Hunde spielen im grünen Gras.",
    "Eine Frau liest ein Buch.",
    "Kinder laufen am Strand.",
    "Eine schwarze Katze schläft auf einem Stuhl.",
    "Der Mann in einem blauen Hemd kocht.",
]
TINY = [
    "--vocab-size", "120", "--d-model", "32", "--layers", "1", "--heads", "2", "--ffn", "64",
    "--max-positions", "64", "--max-tokens", "256", "--threads", "1", "--device", "cpu",
    "--warmup", "10", "--log-seconds", "1000", "--average", "2",
]  # fmt: skip


MODEL_FILES = (
    "source.spm", "target.spm", "vocab.json", "tokenizer_config.json", "special_tokens_map.json",
    "config.json", "generation_config.json", "model.safetensors", "eval.json",
)  # fmt: skip


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    base = tmp_path / "data" / "multi30k"
    base.mkdir(parents=True)
    for split, repeat in (("train", 6), ("val", 1), ("test_2016_flickr", 1)):
        (base / f"{split}.en").write_text("\n".join(EN * repeat) + "\n", encoding="utf-8")
        (base / f"{split}.de").write_text("\n".join(DE * repeat) + "\n", encoding="utf-8")
    return tmp_path / "data"


def run(data_dir: Path, tmp_path: Path, *extra: str) -> dict:
    out, work = tmp_path / "model", tmp_path / "work"
    argv = ["--pair", "en-de", "--data-dir", str(data_dir), "--out", str(out)]
    return main([*argv, "--work-dir", str(work), *TINY, *extra])


def test_saved_model_reloads_with_opus_mt_ids(data_dir: Path, tmp_path: Path) -> None:
    report = run(data_dir, tmp_path, "--epochs", "2")
    out = tmp_path / "model"
    for name in MODEL_FILES:
        assert (out / name).is_file(), name

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSeq2SeqLM.from_pretrained(out)
    vocab = json.loads((out / "vocab.json").read_text())
    last = len(vocab) - 1
    assert (vocab["</s>"], vocab["<unk>"], vocab["<pad>"]) == (0, 1, last)
    assert (tokenizer.eos_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id) == (0, 1, last)
    assert model.config.vocab_size == len(vocab)
    assert model.config.decoder_start_token_id == model.config.pad_token_id == last
    assert model.generation_config.decoder_start_token_id == last

    ids = tokenizer(EN[0])["input_ids"]
    assert ids[-1] == 0 and 1 not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == EN[0]

    batch = tokenizer(EN[:2], return_tensors="pt", padding=True)
    with torch.inference_mode():
        generated = model.generate(**batch, num_beams=2, max_new_tokens=5)
    assert generated.shape[0] == 2

    assert report["steps"] > 0 and report["epochs_completed"] == 2
    saved = json.loads((out / "eval.json").read_text())
    assert set(saved["tests"]) == {"test_2016_flickr"}
    assert {"bleu", "chrf", "bleu_signature"} <= set(saved["tests"]["test_2016_flickr"])
    assert saved["recipe"]["d_model"] == 32


def test_resume_continues_from_saved_state(data_dir: Path, tmp_path: Path) -> None:
    first = run(data_dir, tmp_path, "--epochs", "1")
    resumed = run(data_dir, tmp_path, "--epochs", "2", "--resume")
    assert resumed["epochs_completed"] == 2
    assert resumed["steps"] == 2 * first["steps"]  # same batches per epoch, none repeated


def test_resume_without_state_says_what_to_do(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"no .*train_state\.pt; run without it"):
        run(data_dir, tmp_path, "--resume")


def test_tatoeba_split_keeps_held_out_sources_out_of_training() -> None:
    sources = [f"zh{i % 1700}" for i in range(3000)]  # repeated sources, as in Tatoeba
    targets = [f"en{i}" for i in range(3000)]
    train, val, test = split_tatoeba(sources, targets, seed=1)
    assert len(test[0]) == 1000 and len(val[0]) == 500
    assert not set(train[0]) & (set(test[0]) | set(val[0]))
    assert split_tatoeba(sources, targets, seed=1) == (train, val, test)  # deterministic
