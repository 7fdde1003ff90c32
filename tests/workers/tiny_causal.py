"""A tiny random-weight HY-MT1.5 look-alike: the real HunYuanDenseV1ForCausalLM architecture,
a byte-level BPE tokenizer trained here on English, German and Chinese lines, and a chat
template with HY-MT's role markers. Built in a temp folder in about a second."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

BOS = "<｜hy_begin▁of▁sentence｜>"
USER = "<｜hy_User｜>"
ASSISTANT = "<｜hy_Assistant｜>"
EOS = "<｜hy_place▁holder▁no▁2｜>"  # HY-MT ends an answer with this token
SEP = "<｜hy_place▁holder▁no▁3｜>"  # closes a system prompt
PAD = "<｜hy_▁pad▁｜>"
SPECIAL = [PAD, BOS, EOS, SEP, USER, ASSISTANT]

# HY-MT's format: BOS [system SEP] <User>text <Assistant>answer EOS.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}" + SEP + "{% endif %}"
    "{% if m['role'] == 'user' %}" + USER + "{{ m['content'] }}{% endif %}"
    "{% if m['role'] == 'assistant' %}" + ASSISTANT + "{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
)

_EN = "a man woman dog cat child group people street park water red blue is are with the".split()
_DE = "ein eine mann frau hund katze kind gruppe leute strasse park wasser rot blau ist mit".split()
_ZH = "一个 男人 女人 狗 猫 孩子 一群 人们 街道 公园 水 红色 蓝色 在 和 混元 翻译 模型".split()
_PROMPT_WORDS = (
    "将以下文本翻译为 英语 中文 德语 注意只需要输出翻译后的结果 不要额外解释 参考下面的翻译 翻译成 "
    "参考上面的信息 把下面的文本翻译成 注意不需要翻译上文 也不要额外解释 <source> </source> "
    "<target> </target> <sn> </sn> Translate the following segment into English German Chinese "
    "without additional explanation"
).split()


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        words = (_EN, _DE, _ZH, _PROMPT_WORDS)[i % 4]
        glue = "" if words is _ZH else " "
        lines.append(glue.join(rng.choice(words) for _ in range(rng.randint(3, 12))) + ".")
    return lines


def build_tiny_hy_mt(
    out_dir: Path, *, max_positions: int = 512, seed: int = 0, config_extra: dict | None = None
) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        HunYuanDenseV1Config,
        HunYuanDenseV1ForCausalLM,
        PreTrainedTokenizerFast,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[SEP, USER, ASSISTANT],
        model_max_length=max_positions,
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(str(out_dir))
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL}
    config = HunYuanDenseV1Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        # vLLM's CPU attention takes head sizes 64 and 128 only (#21): the vLLM tests load
        # this same model, so the transformers path is tested on the shape vLLM runs.
        head_dim=64,
        max_position_embeddings=max_positions,
        pad_token_id=ids[PAD],
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = HunYuanDenseV1ForCausalLM(config).eval()
    model.save_pretrained(str(out_dir))
    GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD]
    ).save_pretrained(str(out_dir))
    if config_extra:
        path = out_dir / "config.json"
        data = json.loads(path.read_text())
        data.update(config_extra)
        path.write_text(json.dumps(data, indent=2))
    return out_dir
