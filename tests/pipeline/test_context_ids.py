"""Context windows over document ids of any scalar type (issue #15, finding 3)."""

from __future__ import annotations

import uuid

import pyarrow as pa

from batchmt.pipeline.text.context import context_windows


def test_uuid_document_ids_give_context_windows() -> None:
    docs = pa.array([uuid.UUID(int=2), uuid.UUID(int=1), uuid.UUID(int=2)], pa.uuid())
    table = pa.table({"text": ["b0", "a0", "b1"], "doc_id": docs, "seg_idx": [0, 0, 1]})
    assert context_windows(table, "text", 2) == [[], [], ["b0"]]
