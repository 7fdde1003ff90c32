"""One row through `restore_many`, as the shard loop restores it (for format tests)."""

from __future__ import annotations

from batchmt.workers.engines.base import Aligner
from batchmt.workers.formats.plan import FormatPlan, FormatResult, Translator
from batchmt.workers.formats.restore import restore_many


def restore_one(
    plan: FormatPlan,
    outs: list[str],
    align: Aligner | None = None,
    translate: Translator | None = None,
) -> FormatResult:
    return restore_many([plan], [outs], align, translate)[0]
