"""Forced terms placed where the free output rendered the source term (issue #22): the
placement logic against a scripted model, the fragment checks, and the bundled demo model
on the default backend (CTranslate2) through the shard loop a job runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from batchmt.pipeline.quality.qe import TERM_PLACEMENT, RowQe
from batchmt.pipeline.spec import spec_from_dict
from batchmt.pipeline.status import OK
from batchmt.pipeline.text.glossary import Glossary, Term
from batchmt.pipeline.text.term_checks import APPENDED, STUB, term_fragments
from batchmt.workers.decoding.placement import TermPlacer
from batchmt.workers.engines.base import EngineConfig, Segment, Translation, TranslationEngine
from batchmt.workers.engines.ct2 import CTranslate2Engine
from batchmt.workers.engines.loading import load_engine
from batchmt.workers.quality import stage as qe_stage
from batchmt.workers.translate import RowInput, translate_rows

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo-en-de"


# -- the placement logic, with a scripted model ---------------------------------------------


class Scripted:
    """A model that likes some target prefixes: each liked phrase adds its bonus."""

    def __init__(self, liked: dict[str, float], glued: str = "") -> None:
        self.liked = liked
        self.glued = glued
        self.scored: list[str] = []
        self.finished: list[str] = []

    def score(self, sources: list[str], texts: list[str]) -> list[tuple[float, int]]:
        self.scored += texts
        return [(sum(v for k, v in self.liked.items() if k in t), 1) for t in texts]

    def continuations(self, sources: list[str], prefixes: list[str], k: int) -> list[list[str]]:
        return [["an einem Strand", "am Strand"] for _ in sources]

    def align(self, sources: list[str], targets: list[str]) -> list[tuple[int, ...]]:
        return [tuple(range(len(s.split()))) for s in sources]

    def finish(self, sources: list[str], prefixes: list[str]) -> list[tuple[str, float]]:
        self.finished += prefixes
        return [(p + " ruht.", -0.5) for p in prefixes]

    def next_glued(self, sources: list[str], prefixes: list[str]) -> list[str]:
        return [self.glued for _ in prefixes]

    def placer(self) -> TermPlacer:
        return TermPlacer(
            self.score,
            self.continuations,
            self.align,
            lambda text: 1,
            self.finish,
            self.next_glued,
        )


def test_the_term_takes_the_renderings_place_and_the_rest_is_kept() -> None:
    model = Scripted({})
    placed = model.placer().place(
        ["A homeless man and his dog take a nap."],
        ["Ein Obdachloser und sein Hund machen ein Nickerchen."],
        [(("dog", "Vierbeiner"),)],
        {"dog": ("Hund",)},
    )
    # Not "... machen Vierbeiner." nor the term appended: the words after it stay.
    assert placed[0].text == "Ein Obdachloser und sein Vierbeiner machen ein Nickerchen."


def test_the_model_chooses_the_article_where_the_term_agrees_otherwise() -> None:
    """Auto (neuter) -> Wagen (masculine): the scripted model prefers "Der" before Wagen in
    the probe and "ein schwarzer Wagen" in the row; nothing here knows German grammar."""
    liked = {"Der Wagen": 5.0, "Das Auto": 5.0, "Der Auto": -5.0, "Das Wagen": -5.0}
    model = Scripted({**liked, "ein schwarzer Wagen": 3.0})
    placer = model.placer()
    texts = ["Das Auto steht hier.", "Der Mann fährt ein schwarzes Auto."]
    placed = placer.place(
        ["The car is here.", "The man drives a black car."],
        texts,
        [(("car", "Wagen"),), (("car", "Wagen"),)],
        {"car": ("Auto",)},
    )
    assert placed[1].text == "Der Mann fährt ein schwarzer Wagen ruht."  # finished by the model
    assert model.finished == ["Der Wagen", "Der Mann fährt ein schwarzer Wagen"]
    assert (placed[0].text or "").startswith("Der Wagen")  # the first word's article too
    assert any(t.endswith("ein schwarzes Wagen") for t in model.scored)


def test_the_models_glued_ending_completes_the_term() -> None:
    model = Scripted({}, glued="n")
    placed = model.placer().place(
        ["A woman talks to a man."],
        ["Eine Frau spricht mit einem Mann."],
        [(("man", "Herr"),)],
        {"man": ("Mann",)},
    )
    assert placed[0].text == "Eine Frau spricht mit einem Herrn."


def test_a_term_with_no_rendering_and_no_aligned_word_is_left_for_the_search() -> None:
    model = Scripted({})
    placed = model.placer().place(
        ["Three women walk past a crowd."],
        ["Drei Frauen gehen vorbei."],  # the model dropped "crowd"
        [(("crowd", "Publikum"),)],
        {"crowd": ("Menschenmenge",)},
    )
    assert placed[0].text is None


# -- fragments ---------------------------------------------------------------------------


def test_fragments_are_found_and_placed_terms_are_not() -> None:
    source = "Three people walk through an empty parking lot in the city."
    appended = "Drei Personen gehen durch einen leeren Parkplatz. Die Metropole."
    assert term_fragments(source, appended, ["Metropole"]) == [APPENDED]
    stub = "Ein schwarz-weißer Vierr Vierbeiner läuft über die Wiese."
    assert term_fragments("A black and white dog runs.", stub, ["Vierbeiner"]) == [STUB]
    fine = "Drei Personen gehen durch einen leeren Parkplatz in der Metropole."
    assert term_fragments(source, fine, ["Metropole"]) == []
    # Two source sentences, the term in the second: a sentence of its own is right there.
    two = "Ein Mann steht. Er hält einen Vierbeiner an der Leine."
    assert term_fragments("A man stands. He holds a dog on a leash.", two, ["Vierbeiner"]) == []


class Appending(TranslationEngine):
    """Writes the source and then the terms as a sentence of their own."""

    max_input_tokens = 64
    signature: ClassVar[dict[str, str]] = {"model": "appending"}

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def translate(self, segments: list[Segment], *, marked: bool = False) -> list[Translation]:
        return [Translation(" ".join([s.text, *(f"{t}." for _, t in s.terms)])) for s in segments]


def test_a_term_written_as_a_fragment_is_flagged_not_hidden() -> None:
    rows = [RowInput("A car in a city.", glossary=Glossary([Term("city", "Metropole")]))]
    results, _ = translate_rows(
        Appending(), rows, target_lang="de", max_batch_tokens=64, max_batch_size=4
    )
    assert results[0].term_placement and results[0].translation.endswith("Metropole.")
    # The QE stage puts it in qe_flags (the other signals stubbed: only this flag counts).
    stage = qe_stage.QeStage.__new__(qe_stage.QeStage)
    stage.spec = spec_from_dict({
        "source_lang": "en", "target_lang": "de", "input": {"path": "x"},
        "output": {"path": "y"}, "model": {"name_or_path": "unused"},
        "quality": {"fallback": {"enabled": False}},
    })  # fmt: skip
    stage.engine, stage.settings = Appending(), None  # type: ignore[assignment]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(qe_stage, "assess_rows", lambda *a: [RowQe(0.9, [])])
        qes, counts = stage.run(rows, ["A car in a city."], results)
    assert qes[0] is not None and qes[0].flags == [TERM_PLACEMENT]
    assert counts.flag_counts == {TERM_PLACEMENT: 1}


# -- the bundled demo model on CTranslate2 -----------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BATCHMT_CACHE", str(tmp_path_factory.mktemp("ct2-cache")))
        yield


def _demo_engine() -> CTranslate2Engine:
    spec = spec_from_dict({
        "source_lang": "en", "target_lang": "de", "input": {"path": "unused"},
        "output": {"path": "unused"},
        "model": {"name_or_path": str(DEMO), "backend": "ctranslate2", "quantization": "int8"},
        "decoding": {"num_beams": 4},
    })  # fmt: skip
    engine = load_engine(EngineConfig.from_spec(spec), str(DEMO), torch.device("cpu"))
    assert isinstance(engine, CTranslate2Engine)
    return engine


@pytest.fixture(scope="module")
def demo() -> CTranslate2Engine:
    return _demo_engine()


@pytest.fixture
def fresh_demo() -> CTranslate2Engine:
    """An engine whose placer has seen no output yet: what it counts over the outputs it
    sees (first words, noun words) steers later placements."""
    return _demo_engine()


class _Searches:
    """Stands in for the constrained collaborator and counts the rows sent to it."""

    def __init__(self) -> None:
        self.rows = 0

    def translate(self, segments: list[Segment]) -> list[Translation]:
        self.rows += len(segments)
        return [Translation("(search)") for _ in segments]


def test_demo_override_rows_finish_on_ctranslate2_in_place(
    demo: CTranslate2Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dog -> Vierbeiner, man -> Herr, street -> Gasse: each term where the free output
    had the model's own word, the row finished on CTranslate2 (no row is sent to the
    constrained search on the transformers model)."""
    searches = _Searches()
    monkeypatch.setattr(demo, "constrained", searches)
    sources = [
        "A homeless man and his dog take a nap.",
        "A woman talks to a man.",
        "A large group of people fill a street.",
    ]
    glossary = Glossary([Term("dog", "Vierbeiner"), Term("man", "Herr"), Term("street", "Gasse")])
    rows = [RowInput(s, glossary=glossary) for s in sources]
    free, _ = translate_rows(
        demo, [RowInput(s) for s in sources], target_lang="de", max_batch_tokens=512,
        max_batch_size=8, formats_mode="text",
    )  # fmt: skip
    results, _ = translate_rows(
        demo, rows, target_lang="de", max_batch_tokens=512, max_batch_size=8, formats_mode="text"
    )
    assert searches.rows == 0
    for source, before, after in zip(sources, free, results, strict=True):
        assert after.status == OK and not after.term_placement, after
        text, old = after.translation or "", before.translation or ""
        assert "Hund" not in text and "Mann " not in text and "Straße" not in text, text
        assert term_fragments(source, text, ["Vierbeiner", "Herr", "Gasse"]) == []
        # In place: as many words as the free output (give or take the phrase around it).
        assert abs(len(text.split()) - len(old.split())) <= 1, (old, text)
    assert "sein Vierbeiner" in (results[0].translation or "")
    assert "einem Herrn" in (results[1].translation or "")  # the model's ending


def test_demo_placement_off_defers_to_the_constrained_search(
    fresh_demo: CTranslate2Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = fresh_demo
    calls: list[int] = []

    class Recorder:
        def translate(self, segments: list[Segment]) -> list[Translation]:
            calls.append(len(segments))
            return [Translation("Vierbeiner (search).") for _ in segments]

    monkeypatch.setattr(demo, "constrained", Recorder())
    segment = Segment("A dog sleeps.", terms=(("dog", "Vierbeiner"),))
    placed = demo.translate([segment])[0].text
    assert "Vierbeiner" in placed and "search" not in placed and calls == []
    demo.place_terms = False
    try:
        assert demo.translate([segment])[0].text == "Vierbeiner (search)." and calls == [1]
    finally:
        demo.place_terms = True


def test_two_terms_in_a_row_each_take_the_models_ending() -> None:
    """An ending glued to the first term changes the word in front of the second: each
    term's ending is still the one asked for (no lookup of a key that changed)."""
    model = Scripted({}, glued="n")
    placed = model.placer().place(
        ["A man talks to a man."],
        ["Ein Mann spricht mit einem Mann Mann."],
        [(("man", "Herr"),)],
        {"man": ("Mann",)},
    )
    assert placed[0].text == "Ein Herrn spricht mit einem Herrn Herrn."
