"""Column names with a meaning to batchmt, defined once: the optional input columns it reads
besides `input.id_column` / `input.text_column`, and the columns it adds to every output row.
"""

from __future__ import annotations

from typing import Final

# Optional input columns, used when present.
CONTEXT: Final = "context"  # list<string>: an explicit context window per row
DOC_ID: Final = "doc_id"  # the document a row belongs to: shards never split one
SEG_IDX: Final = "seg_idx"  # the row's position in its document (context windows)
GLOSSARY: Final = "glossary"  # list<struct<source, target>>: the row's own glossary terms
REFERENCE: Final = "reference"  # a reference translation: quality samples are scored on it

# Output columns, appended to the input's. Always written:
TRANSLATION: Final = "translation"
STATUS: Final = "status"  # one of pipeline.status.ALL
ERROR: Final = "error"  # why a row was not translated (null when it was)
OUTPUT_COLUMNS: Final = (TRANSLATION, STATUS, ERROR)

# Written when the job has a glossary or rows carry their own (the GLOSSARY input column).
GLOSSARY_HITS: Final = "glossary_hits"
GLOSSARY_MISSED: Final = "glossary_missed"
GLOSSARY_COLUMNS: Final = (GLOSSARY_HITS, GLOSSARY_MISSED)

# Written unless formats.mode is "text".
FORMAT_STATUS: Final = "format_status"
FORMAT_DETAIL: Final = "format_detail"
FORMAT_COLUMNS: Final = (FORMAT_STATUS, FORMAT_DETAIL)

# Row-level quality estimation (pipeline/quality/qe.py), written by `run` and `score`:
QE_SCORE: Final = "qe_score"  # float, higher is better; null for rows not translated
QE_FLAGS: Final = "qe_flags"  # list<string>: what looks wrong, empty when nothing does
QE_COLUMNS: Final = (QE_SCORE, QE_FLAGS)

# Whether the row's output was reused instead of decoded for it (translation memory, or a
# repeat of a row the job decoded): written by `run`, False everywhere without a memory.
FROM_MEMORY: Final = "from_memory"

# Every column a job may add; an input that already has one would see it overwritten.
RESULT_COLUMNS: Final = (
    *OUTPUT_COLUMNS,
    *GLOSSARY_COLUMNS,
    *FORMAT_COLUMNS,
    *QE_COLUMNS,
    FROM_MEMORY,
)


def written_columns(translation_column: str | None) -> tuple[str, ...]:
    """The columns a job adds: `score` (input.translation_column set) adds only the QE
    columns, so its input may hold `translation`, `status` and the rest."""
    return QE_COLUMNS if translation_column is not None else RESULT_COLUMNS
