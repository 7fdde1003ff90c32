"""Before any work: check the input, plan shards, and claim (or resume) the output."""

from __future__ import annotations

from dataclasses import dataclass

from batchmt.pipeline.commit import OutputLayout, prepare_output
from batchmt.pipeline.corpus import CorpusError, check_schema, open_dataset
from batchmt.pipeline.glossary import load_glossary
from batchmt.pipeline.shards import Plan, plan_shards
from batchmt.pipeline.spec import JobSpec
from batchmt.pipeline.storage import open_fs

# Columns the job adds to every output row; an input that already has them would be
# silently overwritten, so it is refused up front.
RESULT_COLUMNS = (
    "translation",
    "status",
    "error",
    "glossary_hits",
    "glossary_missed",
    "format_status",
    "format_detail",
)


@dataclass(frozen=True)
class Prepared:
    layout: OutputLayout
    plan: Plan
    state: str  # "new" | "resume"
    fingerprint: str


def output_layout(spec: JobSpec) -> OutputLayout:
    fs, root = open_fs(spec.output.path, spec.output.storage_options)
    return OutputLayout(fs, root)


def make_plan(spec: JobSpec) -> Plan:
    """Plan from Parquet metadata only; fails on a schema problem with one line."""
    dataset = open_dataset(spec.input)
    check_schema(dataset, spec.input)
    clash = [c for c in RESULT_COLUMNS if c in dataset.schema.names]
    if clash:
        raise CorpusError(
            f"input already has column(s) {', '.join(clash)}, which batchmt writes; "
            "rename them in the input (they would be overwritten)"
        )
    return plan_shards(dataset, spec.input, spec.sharding)


def prepare(spec: JobSpec) -> Prepared:
    layout = output_layout(spec)
    plan = make_plan(spec)
    if spec.glossary.path:
        # A bad glossary file fails here, before any output is claimed or worker started.
        load_glossary(
            spec.glossary.path, spec.source_lang, spec.target_lang, spec.glossary.storage_options
        )
    fingerprint = spec.fingerprint()
    state, frozen = prepare_output(layout, plan, fingerprint, spec.output.overwrite)
    return Prepared(layout, frozen, state, fingerprint)
