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
from batchmt.pipeline.text.term_checks import APPENDED, PREPENDED, STUB, term_fragments
from batchmt.workers.decoding.placement import TermPlacer
from batchmt.workers.engines.base import EngineConfig, Segment, Translation, TranslationEngine
from batchmt.workers.engines.ct2 import CTranslate2Engine
from batchmt.workers.engines.loading import load_engine
from batchmt.workers.quality import stage as qe_stage
from batchmt.workers.translate import RowInput, translate_rows

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo-en-de"


# -- the placement logic, with a scripted model ---------------------------------------------


class Scripted:
    """A model that likes some target phrases: each liked phrase adds its bonus to the
    word it ends on (a word is a piece here), so a text's prefixes score as a model's do."""

    def __init__(self, liked: dict[str, float], glued: str = "") -> None:
        self.liked = liked
        self.glued = glued
        self.scored: list[str] = []
        self.finished: list[str] = []

    def score(self, sources: list[str], texts: list[str]) -> list[list[float]]:
        self.scored += texts
        out = []
        for text in texts:
            words = text.split()
            out.append([
                sum(v for k, v in self.liked.items() if " ".join(words[: n + 1]).endswith(k))
                for n in range(len(words))
            ])  # fmt: skip
        return out

    def continuations(self, sources: list[str], prefixes: list[str], k: int) -> list[list[str]]:
        return [["an einem Strand", "am Strand"] for _ in sources]

    def align(self, sources: list[str], targets: list[str]) -> list[tuple[int, ...]]:
        return [tuple(range(len(s.split()))) for s in sources]

    def finish(self, sources: list[str], prefixes: list[str]) -> list[tuple[str, float]]:
        self.finished += prefixes
        return [(p + " und ruht.", -0.5) for p in prefixes]

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
        {"dog": ("Ein Hund.",)},
    )
    # Not "... machen Vierbeiner." nor the term appended: the words after it stay.
    assert placed[0].text == "Ein Obdachloser und sein Vierbeiner machen ein Nickerchen."


# Strand (masculine) -> Küste (feminine), as the scripted model sees it: "einem Strand."
# but "einer Küste." when each is tried behind the forms of the article it writes for
# "beach" alone ("Ein Strand."). Nothing here knows German grammar.
BEACH = {"einem Strand.": 5.0, "einer Küste.": 5.0}


def test_the_model_chooses_the_article_where_the_term_agrees_otherwise() -> None:
    model = Scripted({**BEACH, "an einer Küste": 3.0, "Eine Küste": 3.0})
    placed = model.placer().place(
        ["A beach is empty.", "A dog lies on a beach."],
        ["Ein Strand ist leer.", "Ein Hund liegt an einem Strand und ruht."],
        [(("beach", "Küste"),), (("beach", "Küste"),)],
        {"beach": ("Strand",)},
        {"beach": ("Ein Strand.",)},
    )
    assert placed[1].text == "Ein Hund liegt an einer Küste und ruht."  # finished by the model
    assert model.finished == ["Eine Küste", "Ein Hund liegt an einer Küste"]
    assert (placed[0].text or "").startswith("Eine Küste")  # the first word's article too
    assert any(t.endswith("an einem Küste") for t in model.scored)


def test_each_phrase_is_scored_once_across_the_search_rounds() -> None:
    """The phrase search's rounds (shape, then each word's ending) each start with the
    phrase the last round chose: it is scored once, and the choice is the same."""
    model = Scripted({**BEACH, "an einer Küste": 3.0})
    placed = model.placer().place(
        ["A dog lies on a beach."],
        ["Ein Hund liegt an einem Strand und ruht."],
        [(("beach", "Küste"),)],
        {"beach": ("Strand",)},
        {"beach": ("Ein Strand.",)},
    )
    assert placed[0].text == "Ein Hund liegt an einer Küste und ruht."
    rows = [t for t in model.scored if t.startswith("Ein Hund")]
    assert len(rows) > 2 and len(rows) == len(set(rows)), rows


def test_a_term_that_agrees_keeps_the_phrase_and_nothing_is_searched() -> None:
    """Hund -> Vierbeiner: the scripted model takes the same article before both, so the
    row's phrase is not re-chosen (no row text is scored, nothing finished)."""
    model = Scripted({"einem Hund.": 5.0, "einem Vierbeiner.": 5.0, "ein Vierbeiner": 9.0})
    placed = model.placer().place(
        ["A man with a dog."],
        ["Ein Mann mit einem Hund."],
        [(("dog", "Vierbeiner"),)],
        {"dog": ("Hund",)},
        {"dog": ("Ein Hund.",)},
    )
    assert placed[0].text == "Ein Mann mit einem Vierbeiner."
    assert model.finished == [] and not any("Mann" in t for t in model.scored)


def test_a_row_places_the_same_first_or_after_other_rows() -> None:
    """Placement is a function of the row: a row that likes another article than an
    earlier row with the same phrase and term still gets its own ("an einer Küste"),
    alone, after the earlier row, or in one batch with it."""
    rows = [
        ("A dog lies on a beach and rests.", "Ein Hund liegt an einem Strand und ruht."),
        ("A cat sits on a beach and rests.", "Eine Katze sitzt an einem Strand und ruht."),
    ]
    liked = {**BEACH, "Katze sitzt an einer Küste": 3.0}
    terms = [(("beach", "Küste"),)]
    defaults = {"beach": ("Strand",)}
    answers = {"beach": ("Ein Strand.",)}
    cat = rows[1]

    def place(placer: TermPlacer, batch: list[tuple[str, str]]) -> list[str | None]:
        found = placer.place(
            [s for s, _ in batch], [t for _, t in batch], terms * len(batch), defaults, answers
        )
        return [p.text for p in found]

    alone = place(Scripted(liked).placer(), [cat])[0]
    assert alone == "Eine Katze sitzt an einer Küste und ruht."
    placer = Scripted(liked).placer()
    first = place(placer, [rows[0]])[0]
    assert first == "Ein Hund liegt an einem Küste und ruht."  # its own (scripted) choice
    assert place(placer, [cat])[0] == alone
    assert place(Scripted(liked).placer(), rows)[1] == alone


# The scripted model's whole-row score prefers the ending it glues (see _end_terms).
HERRN = {"Herrn": 1.0, "Herrn.": 1.0}


def test_the_models_glued_ending_completes_the_term() -> None:
    model = Scripted(HERRN, glued="n")
    placed = model.placer().place(
        ["A woman talks to a man."],
        ["Eine Frau spricht mit einem Mann."],
        [(("man", "Herr"),)],
        {"man": ("Mann",)},
        {"man": ("Ein Mann.",)},
    )
    assert placed[0].text == "Eine Frau spricht mit einem Herrn."


def test_a_term_with_no_rendering_and_no_aligned_word_is_left_for_the_search() -> None:
    model = Scripted({})
    placed = model.placer().place(
        ["Three women walk past a crowd."],
        ["Drei Frauen gehen vorbei."],  # the model dropped "crowd"
        [(("crowd", "Publikum"),)],
        {"crowd": ("Menschenmenge",)},
        {"crowd": ("Eine Menschenmenge.",)},
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
    # The term in front of a sentence that starts over (the constrained search's way out).
    hat = "A man with a balloon hat makes balloon animals."
    before = "Kopfbedeckung Ein Herr mit einem Luftballonhut macht Ballontiere."
    assert term_fragments(hat, before, ["Kopfbedeckung", "Herr"]) == [PREPENDED]
    # A term that rightly opens its sentence: a name follows (the source has it too), or a
    # lower-case word does.
    name = "Herr Smith geht mit dem Vierbeiner."
    assert term_fragments("Mr. Smith walks his dog.", name, ["Herr", "Vierbeiner"]) == []
    assert term_fragments("Dogs run.", "Vierbeiner rennen.", ["Vierbeiner"]) == []


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


class Deferring(Appending):
    """Defers every row with terms; places them itself, except a row that says "fails"
    (placement raises) or "search" (left for the constrained search)."""

    def __init__(self) -> None:
        self.placed: list[int] = []  # rows per place_deferred call

    def translate_or_defer(
        self, segments: list[Segment], *, marked: bool = False
    ) -> list[Translation]:
        return [Translation(s.text, deferred=bool(s.terms)) for s in segments]

    def place_deferred(
        self, segments: list[Segment], drafts: list[Translation]
    ) -> list[Translation]:
        self.placed.append(len(segments))
        if any("fails" in s.text for s in segments):
            raise RuntimeError("placement broke")
        return [
            d if "search" in s.text else Translation(f"{s.text} (placed)")
            for s, d in zip(segments, drafts, strict=True)
        ]

    def constrain(self, segments: list[Segment]) -> list[Translation]:
        return [Translation(f"{s.text} (searched)") for s in segments]


def test_the_shard_loop_places_the_deferred_rows_of_all_batches_at_once() -> None:
    """One place_deferred call for the deferred rows of every batch (a call costs more
    than its rows); the rows it leaves go to the constrained search, so does a row whose
    placement raises (halved down to it), and the rows without terms are not touched."""
    glossary = Glossary([Term("car", "Wagen")])
    texts = ["A car.", "A red car.", "A car to search.", "No terms here.", "A car that fails."]
    rows = [RowInput(t, glossary=glossary) for t in texts]
    engine = Deferring()
    results, stats = translate_rows(
        engine, rows, target_lang="de", max_batch_tokens=64, max_batch_size=1
    )
    assert engine.placed[0] == 4  # then halved down to the failing row
    assert [r.translation for r in results] == [
        "A car. (placed)", "A red car. (placed)", "A car to search. (searched)", "No terms here.",
        "A car that fails. (searched)",
    ]  # fmt: skip
    # Five free batches of one row, two constrained ones; a placement call is no batch.
    assert stats.batches == 7


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
    """An engine of the test's own (it switches placement off, or must have placed
    nothing before)."""
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
    model = Scripted(HERRN, glued="n")
    placed = model.placer().place(
        ["A man talks to a man."],
        ["Ein Mann spricht mit einem Mann Mann."],
        [(("man", "Herr"),)],
        {"man": ("Mann",)},
        {"man": ("Ein Mann.",)},
    )
    assert placed[0].text == "Ein Herrn spricht mit einem Herrn Herrn."


def test_demo_a_row_places_the_same_first_or_after_others(
    demo: CTranslate2Engine, fresh_demo: CTranslate2Engine
) -> None:
    """The same row and free translation, placed by an engine that has placed nothing
    yet and by one that has placed other rows with the same terms first (and in one
    batch with them): the same text. Nothing one row teaches the placer steers another."""
    beach = (("beach", "Küste"),)
    others = [
        ("A dog runs on the beach.", beach),
        ("Two children play in the sand at the beach.", beach),
        ("A woman in a hat walks her dog.", (("hat", "Kopfbedeckung"), ("dog", "Vierbeiner"))),
        ("A crowd watches a man on a stage.", (("crowd", "Publikum"), ("man", "Herr"))),
    ]
    row = ("A girl in a red hat runs along the beach.", (("hat", "Kopfbedeckung"), *beach))

    def place(
        engine: CTranslate2Engine, batch: list[tuple[str, tuple[tuple[str, str], ...]]]
    ) -> list[str | None]:
        segments = [Segment(s, terms=t) for s, t in batch]
        free = [r[0].text for r in engine._decode_free(segments)]
        engine.term_defaults.learn(src for _, t in batch for src, _ in t)
        return [
            p.text
            for p in engine.placer.place(
                [s for s, _ in batch],
                free,
                [t for _, t in batch],
                engine.term_defaults.renderings,
                engine.term_defaults.answers,
            )
        ]

    first = place(fresh_demo, [row])[0]
    assert first is not None and "Küste" in first and "Kopfbedeckung" in first, first
    place(demo, others)
    assert place(demo, [row])[0] == first
    assert place(demo, [*others, row])[-1] == first


def test_an_ending_the_whole_row_scores_lower_is_not_glued() -> None:
    """The model's next piece after "Ein Herr" is "n", but the row with it scores lower:
    the term stands bare."""
    model = Scripted({"Ein Herr mit": 2.0}, glued="n")
    placed = model.placer().place(
        ["A man with signs."],
        ["Ein Mann mit Schildern."],
        [(("man", "Herr"),)],
        {"man": ("Mann",)},
        {"man": ("Ein Mann.",)},
    )
    assert placed[0].text == "Ein Herr mit Schildern."


def test_demo_continuations_are_ctranslate2s_alternatives(demo: CTranslate2Engine) -> None:
    """The placer's alternatives for a phrase start (the likeliest next pieces, each run on
    greedily) read off the scores of one greedy step: the same texts, in the same order,
    as CTranslate2's own (slower) `return_alternatives`, also where the likeliest next
    piece would end the sentence (not an alternative there)."""
    sources = ["A dog lies on the beach.", "A man and his dog.", "A dog.", "Two men talk."]
    prefixes = ["Ein Hund liegt", "Ein Mann und", "Ein Hund.", ""]
    found = demo._continuations(sources, prefixes, 4)
    heads = [t if p else [] for p, t in zip(prefixes, demo._target_tokens(prefixes), strict=True)]
    for source, head, options in zip(sources, heads, found, strict=True):
        result = demo.translator.translate_batch(
            demo._source_tokens([Segment(source)]), target_prefix=[head], beam_size=1,
            num_hypotheses=4, return_alternatives=True, max_decoding_length=len(head) + 3,
        )[0]  # fmt: skip
        tails = [list(h)[len(head) : len(head) + 3] for h in result.hypotheses]
        assert options == [t.strip() for t in demo._detokenize(tails)], (head, options)
