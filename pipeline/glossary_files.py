"""Glossary files: TSV, CSV (header `source, target`, optional `case_sensitive, source_lang,
target_lang`) and TMX 1.4, read through fsspec.

Loading happens once per job, before any work: a bad file fails with `file:line: reason`,
so the person fixing it is sent to the line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from batchmt.pipeline.glossary import Glossary, Term, lang_matches
from batchmt.pipeline.storage import open_fs

_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n", ""}
_COLUMNS = {"source", "target", "case_sensitive", "source_lang", "target_lang"}
_TEXT_EXTENSIONS = {".tsv": "\t", ".tab": "\t", ".txt": "\t", ".csv": ","}


class GlossaryError(ValueError):
    """A glossary file that cannot be used; the message is `file:line: reason`."""


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
        term = Term.clean(row["source"], row["target"], flag in _TRUE)
        if term is None:
            raise GlossaryError(f"{url}:{line}: empty source or target term")
        yield line, term
    if header is None:
        raise GlossaryError(f"{url}:1: empty glossary; expected a header line source, target")


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
