"""Per-job tag lists (formats.ignore_tags, formats.non_splitting_tags), from the spec to
the lexer."""

from __future__ import annotations

from typing import ClassVar

import pytest

from batchmt.pipeline.spec import FormatsSpec
from batchmt.workers.engines.base import Segment, Translation, TranslationEngine
from batchmt.workers.formats.markup import TagRules
from batchmt.workers.formats.plan import FormatOptions, prepare_formats
from batchmt.workers.formats.restore import restore_many
from batchmt.workers.translate import RowInput, translate_rows


def upper(texts: list[str]) -> list[str]:
    return [t.upper() for t in texts]


def test_ignore_tags_keep_their_content() -> None:
    text = "<p>Order <sku>Blue Widget XL</sku> today.</p>"
    plain = prepare_formats(text, "auto")
    ignored = prepare_formats(text, FormatOptions("auto", TagRules(ignore=frozenset({"sku"}))))
    assert "Blue Widget XL" in " ".join(plain.units)
    assert "Blue Widget XL" not in " ".join(ignored.units)
    [result] = restore_many([ignored], [upper(ignored.units)], None, upper)
    assert result.text == "<p>ORDER <sku>Blue Widget XL</sku> TODAY.</p>"


def test_non_splitting_tags_keep_the_sentence_whole() -> None:
    text = "<p>Click <div class='btn'>Save</div> to keep your changes.</p>"
    split = prepare_formats(text, "auto")
    whole = prepare_formats(text, FormatOptions("auto", TagRules(non_splitting=frozenset({"div"}))))
    assert split.units == ["Click", "Save", "to keep your changes."]
    assert whole.units == ["Click Save to keep your changes."]
    [result] = restore_many([whole], [upper(whole.units)], None, upper)
    assert result.text == "<p>CLICK <div class='btn'>SAVE</div> TO KEEP YOUR CHANGES.</p>"


def test_spec_lists_reach_the_lexer() -> None:
    spec = FormatsSpec(ignore_tags=["SKU", " sku"], non_splitting_tags=["div"])
    assert spec.ignore_tags == ["sku"]
    options = FormatOptions.from_spec(spec)
    assert options.rules == TagRules(frozenset({"sku"}), frozenset({"div"}))
    plan = prepare_formats("<div>Buy <sku>X1 Pro</sku> now</div>", options)
    assert plan.units == ["Buy now"]


def test_spec_refuses_what_is_not_an_element_name() -> None:
    with pytest.raises(ValueError, match="not element names"):
        FormatsSpec(ignore_tags=["<sku>"])


class UpperEngine(TranslationEngine):
    """Upper-cases: enough to see which text reached the model."""

    max_input_tokens = 64
    signature: ClassVar[dict[str, str]] = {"model": "upper"}

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) + 1 for t in texts]

    def translate(self, segments: list[Segment], *, marked: bool = False) -> list[Translation]:
        return [Translation(s.text.upper()) for s in segments]


def test_options_reach_the_shard_loop() -> None:
    text = "<p>Order <sku>Blue Widget</sku> today.</p>"
    options = FormatOptions.from_spec(FormatsSpec(ignore_tags=["sku"]))
    for formats, expected in [
        ("auto", "<p>ORDER <sku>BLUE WIDGET</sku> TODAY.</p>"),
        (options, "<p>ORDER <sku>Blue Widget</sku> TODAY.</p>"),
    ]:
        [result], _ = translate_rows(
            UpperEngine(),
            [RowInput(text)],
            target_lang="de",
            max_batch_tokens=256,
            max_batch_size=8,
            formats_mode=formats,
        )
        assert result.translation == expected
