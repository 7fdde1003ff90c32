"""Glossaries: load them (TSV, CSV, TMX 1.4), merge per-row terms, find terms in a source
text, and check which target terms a translation contains.

Loading happens once per job, before any work: a bad file fails with `file:line: reason`.
A bad per-row glossary fails only its row (`RowGlossaryError`).

Matching and checking compare NFKC-normalised text, case-insensitively unless a term says
otherwise, so full-width letters, ligatures and case never hide a term.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n", ""}
_COLUMNS = {"source", "target", "case_sensitive", "source_lang", "target_lang"}
_TEXT_EXTENSIONS = {".tsv": "\t", ".tab": "\t", ".txt": "\t", ".csv": ","}
# Separates a target term's accepted forms ("Herr|Herrn"): in a case-inflected language the
# sentence may need an inflected form, and any listed form satisfies the term.
VARIANT_SEPARATOR = "|"


class GlossaryError(ValueError):
    """A glossary file that cannot be used; the message is `file:line: reason`."""


class RowGlossaryError(ValueError):
    """A row's own `glossary` value is malformed; only that row fails."""


@dataclass(frozen=True)
class Term:
    source: str
    target: str
    case_sensitive: bool = False

    @property
    def key(self) -> str:
        return _key(self.source, self.case_sensitive)


@dataclass(frozen=True)
class TermMatch:
    """A glossary term found in a source text; offsets index the original text."""

    start: int
    end: int
    term: Term

    @property
    def pair(self) -> tuple[str, str]:
        return (self.term.source, self.term.target)


def _key(text: str, case_sensitive: bool) -> str:
    text = unicodedata.normalize("NFKC", text)
    return text if case_sensitive else text.casefold()


class Glossary:
    """Terms by normalised source; a row glossary extends and overrides the job's."""

    def __init__(self, terms: Iterable[Term] = ()) -> None:
        self.terms: dict[str, Term] = {}
        for term in terms:
            self.terms[term.key] = term
        self._lengths = sorted({len(k) for k in self.terms}, reverse=True)

    def __len__(self) -> int:
        return len(self.terms)

    def with_row(self, value: Any) -> Glossary:
        """This glossary plus a row's `glossary` column (list of {source, target})."""
        if value is None:
            return self
        row_terms = parse_row_glossary(value)
        if not row_terms:
            return self
        return Glossary([*self.terms.values(), *row_terms])

    def match(self, text: str, protected: Sequence[tuple[int, int]] = ()) -> list[TermMatch]:
        """Leftmost-longest, non-overlapping matches; none inside a protected span."""
        if not self.terms:
            return []
        candidates: list[TermMatch] = []
        for case_sensitive in (False, True):
            norm, origin, ends = _normalised(text, case_sensitive)
            for i in range(len(norm)):
                if i and origin[i - 1] == origin[i]:
                    continue  # inside what one original character became ("ﬁ" -> "fi")
                for length in self._lengths:
                    stop = i + length
                    if stop > len(norm) or (stop < len(norm) and origin[stop] == origin[stop - 1]):
                        continue
                    term = self.terms.get(norm[i:stop])
                    if term is None or term.case_sensitive != case_sensitive:
                        continue
                    start, end = origin[i], ends[stop - 1]
                    if _bounded(text, start, end) and not _overlaps(start, end, protected):
                        candidates.append(TermMatch(start, end, term))
                        break  # the longest at this position
        candidates.sort(key=lambda m: (m.start, -(m.end - m.start), m.term.source))
        chosen: list[TermMatch] = []
        for match in candidates:
            if not chosen or match.start >= chosen[-1].end:
                chosen.append(match)
        return chosen


def _normalised(text: str, case_sensitive: bool) -> tuple[str, list[int], list[int]]:
    """NFKC (and casefold) per base character with its combining marks, keeping for each
    output character where its original character cluster starts and ends."""
    out: list[str] = []
    origin: list[int] = []
    ends: list[int] = []
    i = 0
    while i < len(text):
        j = i + 1
        while j < len(text) and unicodedata.combining(text[j]):
            j += 1
        piece = unicodedata.normalize("NFKC", text[i:j])
        if not case_sensitive:
            piece = piece.casefold()
        out.append(piece)
        origin.extend([i] * len(piece))
        ends.extend([j] * len(piece))
        i = j
    return "".join(out), origin, ends


def _unspaced(ch: str) -> bool:
    """Scripts written without spaces between words: no word boundaries there."""
    code = ord(ch)
    return (
        0x0E00 <= code <= 0x0EFF  # Thai, Lao
        or 0x1000 <= code <= 0x109F  # Myanmar
        or 0x1780 <= code <= 0x17FF  # Khmer
        or 0x3040 <= code <= 0x30FF  # Hiragana, Katakana
        or 0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
        or 0xFF66 <= code <= 0xFF9F  # half-width Katakana
        or 0x20000 <= code <= 0x3FFFF  # CJK extensions B+
    )


def _wordy(ch: str) -> bool:
    return (ch.isalnum() or ch == "_") and not _unspaced(ch)


def _bounded(text: str, start: int, end: int) -> bool:
    """A term in a space-delimited script must not start or end inside a word."""
    if _wordy(text[start]) and start > 0 and _wordy(text[start - 1]):
        return False
    return not (_wordy(text[end - 1]) and end < len(text) and _wordy(text[end]))


def _overlaps(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(start < s_end and s_start < end for s_start, s_end in spans)


def term_variants(target: str) -> tuple[str, ...]:
    """The accepted forms of a target term, base form first: "Herr|Herrn" -> ("Herr",
    "Herrn"). Empty forms are dropped; a target without the separator is its only form."""
    forms = (f.strip() for f in target.split(VARIANT_SEPARATOR))
    return tuple(dict.fromkeys(f for f in forms if f)) or (target.strip(),)


def check_terms(
    translation: str, terms: Iterable[Term | tuple[str, str]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(hits, missed): the (source, target) pairs whose target the translation contains.

    Containment, not whole words: an inflected or compound form ("Hundes", "Hundeleine")
    counts, as the decoder guarantees the term's characters, not what follows them. A
    target listing variants ("Herr|Herrn") is found when any one of them is.
    """
    hits: list[tuple[str, str]] = []
    missed: list[tuple[str, str]] = []
    folded = _key(translation, False)
    exact = _key(translation, True)
    for item in terms:
        term = item if isinstance(item, Term) else Term(item[0], item[1])
        haystack = exact if term.case_sensitive else folded
        found = any(
            _key(form, term.case_sensitive) in haystack for form in term_variants(term.target)
        )
        (hits if found else missed).append((term.source, term.target))
    return hits, missed


def parse_row_glossary(value: Any) -> list[Term]:
    """A row's `glossary` value: a list of {source, target} (or a {source: target} map)."""
    if isinstance(value, Mapping):
        value = [{"source": k, "target": v} for k, v in value.items()]
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise RowGlossaryError(
            f"glossary must be a list of {{source, target}} entries, got {type(value).__name__}"
        )
    terms: dict[str, Term] = {}
    for n, entry in enumerate(value, 1):
        if not isinstance(entry, Mapping):
            raise RowGlossaryError(f"glossary entry {n} is not a {{source, target}} struct")
        source, target = entry.get("source"), entry.get("target")
        if not isinstance(source, str) or not isinstance(target, str):
            raise RowGlossaryError(f"glossary entry {n} needs string source and target")
        term = _term(source, target, bool(entry.get("case_sensitive") or False))
        if term is None:
            raise RowGlossaryError(f"glossary entry {n} has an empty source or target")
        old = terms.get(term.key)
        if old is not None and old.target != term.target:
            raise RowGlossaryError(
                f"glossary entries give {source!r} two targets ({old.target!r}, {target!r}); "
                "keep one"
            )
        terms[term.key] = term
    return list(terms.values())


def _term(source: str, target: str, case_sensitive: bool) -> Term | None:
    source, target = source.strip(), target.strip()
    if not source or not target:
        return None
    return Term(source, target, case_sensitive)


def load_glossary(
    url: str,
    source_lang: str,
    target_lang: str,
    storage_options: Mapping[str, Any] | None = None,
) -> Glossary:
    """Read a TSV/CSV/TMX glossary through fsspec; raise GlossaryError on a bad file."""
    from batchmt.pipeline.storage import open_fs

    fs, path = open_fs(url, storage_options)
    try:
        with fs.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise GlossaryError(f"{url}: glossary file not found; check glossary.path") from None
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if suffix == ".tmx":
        pairs = _read_tmx(raw, url, source_lang, target_lang)
        return _collect(url, ((line, Term(s, t)) for line, s, t in pairs))
    if suffix not in _TEXT_EXTENSIONS:
        raise GlossaryError(
            f"{url}: unknown glossary format {suffix or '(no extension)'!r}; use .tsv, .csv or .tmx"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GlossaryError(f"{url}: not UTF-8 text ({exc}); save the file as UTF-8") from None
    rows = _read_table(text, url, _TEXT_EXTENSIONS[suffix], source_lang, target_lang)
    return _collect(url, rows)


def _collect(url: str, rows: Iterable[tuple[int, Term]]) -> Glossary:
    seen: dict[str, tuple[int, Term]] = {}
    for line, term in rows:
        old = seen.get(term.key)
        if old is not None and old[1].target != term.target:
            raise GlossaryError(
                f"{url}:{line}: source {term.source!r} has target {term.target!r} here but "
                f"{old[1].target!r} on line {old[0]}; keep one"
            )
        seen.setdefault(term.key, (line, term))
    return Glossary(t for _, t in seen.values())


def _read_table(
    text: str, url: str, delimiter: str, source_lang: str, target_lang: str
) -> Iterable[tuple[int, Term]]:
    # TSV has no quoting convention: a quote is part of the term.
    source = io.StringIO(text, newline="")
    if delimiter == "\t":
        reader = csv.reader(source, delimiter=delimiter, quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(source, delimiter=delimiter)
    header: list[str] | None = None
    for fields in reader:
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if header is None:
            header = [f.strip().lower() for f in fields]
            unknown = [c for c in header if c not in _COLUMNS]
            if "source" not in header or "target" not in header or unknown:
                raise GlossaryError(
                    f"{url}:{line}: header must name columns source and target "
                    f"(optional: case_sensitive, source_lang, target_lang); got {fields}"
                )
            continue
        if len(fields) != len(header):
            raise GlossaryError(
                f"{url}:{line}: expected {len(header)} fields ({', '.join(header)}), "
                f"got {len(fields)}"
            )
        row = dict(zip(header, fields))
        if not _lang_ok(row.get("source_lang", ""), source_lang) or not _lang_ok(
            row.get("target_lang", ""), target_lang
        ):
            continue
        flag = row.get("case_sensitive", "").strip().lower()
        if flag not in _TRUE | _FALSE:
            raise GlossaryError(
                f"{url}:{line}: case_sensitive must be true/false, got {row['case_sensitive']!r}"
            )
        term = _term(row["source"], row["target"], flag in _TRUE)
        if term is None:
            raise GlossaryError(f"{url}:{line}: empty source or target term")
        yield line, term
    if header is None:
        raise GlossaryError(f"{url}:1: empty glossary; expected a header line source, target")


def lang_matches(tag: str, lang: str) -> bool:
    """ "en-US" matches "en", "zh-Hant" matches "zh": one tag is a subtag prefix of the other."""
    a = tag.strip().lower().replace("_", "-").split("-")
    b = lang.strip().lower().replace("_", "-").split("-")
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _lang_ok(tag: str, lang: str) -> bool:
    return not tag.strip() or lang_matches(tag, lang)


def _read_tmx(
    raw: bytes, url: str, source_lang: str, target_lang: str
) -> list[tuple[int, str, str]]:
    """(line, source, target) for each <tu> that has both job languages; other pairs skipped.

    Parsed with expat for line numbers. Inline markup inside <seg> (<bpt>, <ph>, ...) holds
    native codes, not text, so only the segment's own text is kept.
    """
    from xml.parsers import expat

    parser = expat.ParserCreate()
    tus: list[tuple[int, dict[str, str]]] = []
    stack: list[str] = []
    tu: dict[str, str] | None = None
    tu_line = 0
    lang: str | None = None
    seg: list[str] | None = None
    errors: list[str] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal tu, tu_line, lang, seg
        line = parser.CurrentLineNumber
        if not stack and name != "tmx":
            errors.append(f"{url}:{line}: not a TMX file: root element is <{name}>, not <tmx>")
        if name == "tu":
            tu, tu_line = {}, line
        elif name == "tuv":
            lang = attrs.get("xml:lang") or attrs.get("lang")
            if tu is None or not lang:
                errors.append(f"{url}:{line}: <tuv> needs xml:lang and must sit inside <tu>")
        elif name == "seg":
            seg = []
        stack.append(name)

    def end(name: str) -> None:
        nonlocal tu, lang, seg
        stack.pop()
        if name == "seg" and seg is not None and tu is not None and lang:
            tu[lang] = "".join(seg)
            seg = None
        elif name == "tu" and tu is not None:
            tus.append((tu_line, tu))
            tu = None

    def text(data: str) -> None:
        if seg is not None and stack and stack[-1] == "seg":
            seg.append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as exc:
        raise GlossaryError(f"{url}:{exc.lineno}: invalid TMX (XML error: {exc})") from None
    if errors:
        raise GlossaryError(errors[0])
    pairs: list[tuple[int, str, str]] = []
    for line, variants in tus:
        source = next((v for k, v in variants.items() if lang_matches(k, source_lang)), None)
        target = next((v for k, v in variants.items() if lang_matches(k, target_lang)), None)
        if source is None or target is None:
            continue  # a unit for another language pair
        if not source.strip() or not target.strip():
            raise GlossaryError(f"{url}:{line}: empty source or target term in <tu>")
        pairs.append((line, source.strip(), target.strip()))
    return pairs
