"""Language tags compared as BCP 47 tags, not as strings.

A glossary exported as `zh-TW` belongs to a `zh-Hant` job, `iw` is `he`, `nb` is what a
`no` job translates into, and `deu_Latn` (a FLORES code) is `de`. langcodes carries the IANA
registry and CLDR's likely-subtags and language-matching data; a table of our own would
cover the cases someone has already reported and miss the rest.

The rule, used wherever a tag must name the job's language:
- deprecated and overlong codes are replaced (`iw` -> `he`, `eng` -> `en`, `tl` -> `fil`);
- the script must agree once both tags are filled in with their likely subtags
  (`zh-TW` -> `zh-Hant-TW`, `zh` -> `zh-Hans-CN`, `sr` -> `sr-Cyrl-RS`): text in another
  script is a different glossary;
- the region must agree only where both tags name one (`en-GB` fits an `en` job, not an
  `en-US` one);
- the languages must be the same or CLDR-close (a macrolanguage and its dominant member:
  `no` and `nb`, but not `no` and `nn`, nor `zh` and `yue`).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import langcodes

from batchmt.pipeline.errors import BatchmtError

# CLDR language distance up to which two bare languages count as one: `nb`/`no` is 1,
# `nn`/`no` is 20, `yue`/`zh` is 64 (langcodes' scale: 0-3 "same language").
_SAME_LANGUAGE = 3
# Script codes that name the same writing: Korean text is tagged Hang (FLORES: kor_Hang) or
# Kore (CLDR's likely script for `ko`), Hangul with or without Han characters.
_SCRIPT_ALIAS = {"Hang": "Kore"}


class LanguageTagError(BatchmtError, ValueError):
    """A string that is not a language tag."""


@lru_cache(maxsize=1024)
def parse(tag: str) -> langcodes.Language:
    """The standardized tag (`iw` -> `he`, `EN_us` -> `en-US`); LanguageTagError if invalid."""
    text = tag.strip().replace("_", "-")
    try:
        language = langcodes.Language.get(langcodes.standardize_tag(text))
    except (ValueError, langcodes.tag_parser.LanguageTagError) as exc:
        raise LanguageTagError(f"{tag!r} is not a BCP 47 language tag ({exc})") from None
    if not language.language:
        raise LanguageTagError(f"{tag!r} names no language")
    return language


def check_tag(value: str) -> str:
    """`value` unchanged when it is a registered BCP 47 tag (`de`, `zh-Hant`, `deu_Latn`);
    else LanguageTagError naming the tag to write (`german` -> `de`)."""
    try:
        language = parse(value)
        valid = language.is_valid()
    except LanguageTagError:
        valid = False
    if valid:
        return value
    hint = "a BCP 47 tag such as 'en', 'de', 'zh-Hant' or 'pt-BR'"
    try:
        found = langcodes.find(value.strip())
        hint = f"'{found.to_tag()}' ({found.display_name()})"
    except (LookupError, ImportError, ValueError):
        pass  # not a language name either; language_data missing: the generic hint
    raise LanguageTagError(f"{value!r} is not a BCP 47 language tag; write {hint}")


def normalize(tag: str) -> str:
    """The tag as BCP 47 spells it today: `iw` -> `he`, `zh_tw` -> `zh-TW`, `eng` -> `en`."""
    return parse(tag).to_tag()


@lru_cache(maxsize=4096)
def same_language(tag: str, job: str) -> bool:
    """Whether text tagged `tag` is in the language `job` names (symmetric)."""
    try:
        a, b = parse(tag), parse(job)
    except LanguageTagError:
        return False
    full_a, full_b = a.maximize(), b.maximize()
    script_a, script_b = (_SCRIPT_ALIAS.get(x or "", x) for x in (full_a.script, full_b.script))
    if script_a != script_b:
        return False
    if a.territory and b.territory and a.territory != b.territory:
        return False
    if full_a.language == full_b.language:
        return True
    distance = langcodes.tag_distance(str(full_a.language), str(full_b.language))
    return bool(distance <= _SAME_LANGUAGE)


def best_match(tag: str, supported: Iterable[str]) -> str | None:
    """The entry of `supported` (codes a model knows) that names `tag`'s language: the
    closest by CLDR distance, then the one with the same language subtag (`tw` is `twi`, not
    its macrolanguage `ak`); None when none does."""
    candidates = [code for code in supported if same_language(tag, code)]
    if not candidates:
        return None
    language = parse(tag).language

    def rank(code: str) -> tuple[int, bool, str]:
        exact = parse(code).language == language
        return (langcodes.tag_distance(normalize(tag), normalize(code)), not exact, code)

    return min(candidates, key=rank)


def describe(tags: Iterable[str]) -> str:
    """Distinct tags, sorted, for messages (`de-DE, fr`)."""
    return ", ".join(sorted({t.strip() for t in tags if t.strip()})) or "(none)"
