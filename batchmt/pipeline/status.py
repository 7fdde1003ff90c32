"""Row status values: every output row carries exactly one, naming what happened to it.

The invariant "every input row appears exactly once in the output" holds because a row that
could not be translated is still written, with one of the non-translated statuses below and
a non-null `error` saying why (EMPTY excepted: there was nothing to translate).
"""

from __future__ import annotations

from typing import Final

OK: Final = "ok"
# Text longer than the model's input limit, translated in pieces and joined.
OK_SPLIT: Final = "ok_split"
# Flagged by row-level QE, re-translated with quality.fallback, and the fallback's
# candidate scored better (pipeline/quality/qe.py): the row's translation is the fallback's.
OK_FALLBACK: Final = "ok_fallback"
# Null, empty or whitespace-only text: no model call, the translation is the input as-is.
EMPTY: Final = "empty"
# Translated, but glossary terms matched in the source are missing from the translation
# (the constrained decoder could not place them within the length limit); `error` names them.
GLOSSARY_MISSED: Final = "glossary_missed"
# The model failed on this row after the worker's retries.
FAILED: Final = "failed"
# The row's own data is unusable (null id, malformed per-row glossary, ...): never retried.
INVALID: Final = "invalid"

ALL: Final = (OK, OK_SPLIT, OK_FALLBACK, GLOSSARY_MISSED, EMPTY, FAILED, INVALID)
TRANSLATED: Final = frozenset({OK, OK_SPLIT, OK_FALLBACK, GLOSSARY_MISSED})
ERRORS: Final = frozenset({FAILED, INVALID})


def is_translated(status: str) -> bool:
    """True when the row's translation came from the model."""
    return status in TRANSLATED
