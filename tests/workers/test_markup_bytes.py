"""Issue #23, finding 10, in the shard loop with an engine whose behaviour is known: `ok`
means every byte of the source's markup came back; what cannot come back makes the row
say so; a plain row keeps its line breaks."""

from __future__ import annotations

from typing import ClassVar

import pytest

from batchmt.workers.engines.base import (
    Aligner,
    Alignment,
    Segment,
    Translation,
    TranslationEngine,
)
from batchmt.workers.translate import RowInput, RowResult, translate_rows


class Copier(TranslationEngine):
    """Writes its input back, except what a model tends to lose: an `&`, a stray `<p`,
    a line break (a space), a no-break space (a plain one, as SentencePiece reads it)."""

    max_input_tokens = 64
    signature: ClassVar[dict[str, str]] = {"model": "copier"}

    def __init__(self) -> None:
        self.seen: list[str] = []

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) + 1 for t in texts]

    def translate(self, segments: list[Segment], *, marked: bool = False) -> list[Translation]:
        self.seen += [s.text for s in segments]
        out = []
        for s in segments:
            text = s.text.replace(" & ", " ").replace(" <p", "").replace("\u00a0", " ")
            out.append(Translation(" ".join(text.split())))
        return out

    def aligner(self) -> Aligner:
        def run(sources: list[str], targets: list[str]) -> list[Alignment]:
            found = []
            for source, target in zip(sources, targets, strict=True):
                n, m = len(source.split()), len(target.split())
                found.append(
                    Alignment(
                        tuple(min(i, n - 1) for i in range(m)),
                        tuple(min(i, m - 1) for i in range(n)),
                    )
                )
            return found

        return run


def run(*texts: str) -> tuple[list[RowResult], Copier]:
    engine = Copier()
    results, _ = translate_rows(
        engine,
        [RowInput(t) for t in texts],
        target_lang="de",
        max_batch_tokens=256,
        max_batch_size=8,
    )
    return results, engine


def test_a_tag_cut_off_at_the_end_comes_back() -> None:
    [result], engine = run("A dog <b>runs</b> in the park <p")
    assert result.translation == "A dog <b>runs</b> in the park <p"
    assert result.format_status == "ok"
    assert all("<p" not in seen for seen in engine.seen)  # markup, not text for the model


def test_a_dropped_reference_is_not_ok() -> None:
    [result], _ = run("Tom &amp; Jerry <b>play</b> with a ball.")
    assert "&amp;" not in (result.translation or "")  # the model left the & out
    assert result.format_status == "repaired"
    assert "&amp;" in (result.format_detail or "")


def test_references_come_back_as_the_source_spelled_them() -> None:
    [kept], _ = run("Go &rarr; <i>home</i> now&hellip; Tom&amp;Jerry")
    assert kept.translation == "Go &rarr; <i>home</i> now&hellip; Tom&amp;Jerry"
    assert kept.format_status == "ok"
    # A no-break space the model writes as a plain space: not `ok`, and named.
    [lost], _ = run("Two dogs&nbsp;play in <b>the</b> street.")
    assert "\u00a0" not in (lost.translation or "")  # never decoded into the output
    assert lost.format_status == "repaired" and "&nbsp;" in (lost.format_detail or "")


@pytest.mark.parametrize(
    "row",
    [
        "A dog runs.\r\nThe child plays.",
        "  A dog runs. \n\n The child plays.\r\n",
        "One.\rTwo.\nThree.",
    ],
)
def test_a_plain_row_keeps_its_line_breaks(row: str) -> None:
    [result], _ = run(row)
    assert result.translation == row  # the copier loses every break it is given
