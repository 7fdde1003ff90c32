"""Context windows: the text before a segment in its document, handed to context-aware models.

An explicit `context` column wins (the user knows best). Otherwise the window is rebuilt
from `doc_id` + `seg_idx`: rows of a shard can arrive in any order, so they are sorted once
(vectorised), walked once, and the result is put back in input order.
"""

from __future__ import annotations

from collections import deque

import pyarrow as pa
import pyarrow.compute as pc

from batchmt.pipeline.columns import CONTEXT, DOC_ID, SEG_IDX


def context_windows(table: pa.Table, text_column: str, window: int) -> list[list[str]]:
    """For each row (in input order), the context strings to show the model.

    - `context` column present: its list (null -> [], null items dropped).
    - else `doc_id` and `seg_idx` present and window > 0: the previous `window` non-empty
      segments of the same document by seg_idx, oldest first. Rows without doc_id or
      seg_idx get [].
    - else [] for every row.
    """
    n = table.num_rows
    if CONTEXT in table.column_names:
        return [
            [item for item in value if item is not None] if value else []
            for value in table.column(CONTEXT).to_pylist()
        ]
    names = table.column_names
    if window <= 0 or DOC_ID not in names or SEG_IDX not in names:
        return [[] for _ in range(n)]
    return _windows_from_documents(table, text_column, window)


def _windows_from_documents(table: pa.Table, text_column: str, window: int) -> list[list[str]]:
    n = table.num_rows
    doc_column = table.column(DOC_ID)
    if pa.types.is_dictionary(doc_column.type):  # sorting needs plain values
        doc_column = doc_column.cast(doc_column.type.value_type)
    if isinstance(doc_column.type, pa.BaseExtensionType):  # UUIDs sort by their bytes
        doc_column = pa.chunked_array(
            [chunk.storage for chunk in doc_column.chunks], doc_column.type.storage_type
        )
    keys = pa.table(
        {
            "doc": doc_column,
            "seg": table.column(SEG_IDX),
            "row": pa.array(range(n), pa.int64()),
        }
    )
    # Row index as the last key: duplicate seg_idx keep input order, so output is stable.
    order = pc.sort_indices(
        keys,
        sort_keys=[
            ("doc", "ascending", "at_end"),
            ("seg", "ascending", "at_end"),
            ("row", "ascending"),
        ],
    ).to_pylist()
    docs = table.column(DOC_ID).to_pylist()
    segs = table.column(SEG_IDX).to_pylist()
    texts = table.column(text_column).to_pylist()

    out: list[list[str]] = [[] for _ in range(n)]
    previous: deque[str] = deque(maxlen=window)
    current_doc: object = None
    for row in order:
        doc = docs[row]
        if doc is None or segs[row] is None:
            continue  # no place in a document: no context, and gives none
        if doc != current_doc:
            current_doc = doc
            previous.clear()
        out[row] = list(previous)
        text = texts[row]
        if text is not None and text.strip():
            previous.append(text)
    return out
