"""Glossary files: TSV, CSV (header `source, target`, optional `case_sensitive, source_lang,
target_lang`) and TMX 1.4, read through fsspec.

Loading happens once per job, before any work: a bad file fails with `file:line: reason`,
so the person fixing it is sent to the line. Language columns and TMX `xml:lang` are matched
as BCP 47 tags (`pipeline/text/languages.py`): a `zh-TW` unit serves a `zh-Hant` job. Units for
another pair are skipped and counted in the log; a file with units but none for the job's
pair fails, naming the languages it holds (a wrong `source_lang` would otherwise run the
whole job without its terms).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from batchmt.pipeline.errors import UserError
from batchmt.pipeline.storage.fs import open_fs
from batchmt.pipeline.storage.paths import where
from batchmt.pipeline.text.glossary import Glossary, Term
from batchmt.pipeline.text.languages import describe, same_language

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n", ""}
_COLUMNS = {"source", "target", "case_sensitive", "source_lang", "target_lang"}
_TEXT_EXTENSIONS = {".tsv": "\t", ".tab": "\t", ".txt": "\t", ".csv": ","}


class GlossaryError(UserError, ValueError):
    """A glossary file that cannot be used; the message is `file:line: reason`."""


@dataclass
class _Skipped:
    """Units left out because they are for another language pair."""

    count: int = 0
    languages: set[str] = field(default_factory=set)  # every tag the file names


def load_glossary(
    url: str,
    source_lang: str,
    target_lang: str,
    storage_options: Mapping[str, Any] | None = None,
) -> Glossary:
    """Read a TSV/CSV/TMX glossary through fsspec; raise GlossaryError on a bad file."""
    fs, path = open_fs(url, storage_options)
    try:
        with fs.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise GlossaryError(
            f"{url}: glossary file not found{where(url)}; check glossary.path"
        ) from None
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    skipped = _Skipped()
    if suffix == ".tmx":
        pairs = _read_tmx(raw, url, source_lang, target_lang, skipped)
        glossary = _collect(url, ((line, Term(s, t)) for line, s, t in pairs))
        return _checked(glossary, skipped, url, source_lang, target_lang)
    if suffix not in _TEXT_EXTENSIONS:
        raise GlossaryError(
            f"{url}: unknown glossary format {suffix or '(no extension)'!r}; use .tsv, .csv or .tmx"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GlossaryError(f"{url}: not UTF-8 text ({exc}); save the file as UTF-8") from None
    rows = _read_table(text, url, _TEXT_EXTENSIONS[suffix], source_lang, target_lang, skipped)
    return _checked(_collect(url, rows), skipped, url, source_lang, target_lang)


def _checked(
    glossary: Glossary, skipped: _Skipped, url: str, source_lang: str, target_lang: str
) -> Glossary:
    if skipped.count and not len(glossary):
        raise GlossaryError(
            f"{url}: no terms for {source_lang} -> {target_lang}: its {skipped.count} "
            f"unit(s) are in {describe(skipped.languages)}; check source_lang/target_lang "
            "or the file's language tags"
        )
    if skipped.count:
        log.info(
            "glossary %s: %d term(s) for %s -> %s, %d unit(s) for other languages skipped",
            url,
            len(glossary),
            source_lang,
            target_lang,
            skipped.count,
        )
    return glossary


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
    text: str, url: str, delimiter: str, source_lang: str, target_lang: str, skipped: _Skipped
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
        tags = (row.get("source_lang", "").strip(), row.get("target_lang", "").strip())
        skipped.languages.update(t for t in tags if t)
        if not _lang_ok(tags[0], source_lang) or not _lang_ok(tags[1], target_lang):
            skipped.count += 1
            continue
        flag = row.get("case_sensitive", "").strip().lower()
        if flag not in _TRUE | _FALSE:
            raise GlossaryError(
                f"{url}:{line}: case_sensitive must be true/false, got {row['case_sensitive']!r}"
            )
        term = Term.clean(row["source"], row["target"], flag in _TRUE)
        if term is None:
            raise GlossaryError(f"{url}:{line}: empty source or target term")
        yield line, term
    if header is None:
        raise GlossaryError(f"{url}:1: empty glossary; expected a header line source, target")


def _lang_ok(tag: str, lang: str) -> bool:
    return not tag or same_language(tag, lang)


def _read_tmx(
    raw: bytes, url: str, source_lang: str, target_lang: str, skipped: _Skipped
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
        skipped.languages.update(variants)
        source = next((v for k, v in variants.items() if same_language(k, source_lang)), None)
        target = next((v for k, v in variants.items() if same_language(k, target_lang)), None)
        if source is None or target is None:
            skipped.count += 1  # a unit for another language pair
            continue
        if not source.strip() or not target.strip():
            raise GlossaryError(f"{url}:{line}: empty source or target term in <tu>")
        pairs.append((line, source.strip(), target.strip()))
    return pairs
