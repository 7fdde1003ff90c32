"""Before any work: check the input and glossary, plan shards, claim (or resume) the output.

Everything here fails fast with one line, before a worker starts or a model loads. The
output is claimed under its lease (pipeline/lease.py): a second driver on the same output
stops here, naming the one that holds it, before it deletes or writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from batchmt.jobs.preflight import preflight
from batchmt.pipeline.columns import written_columns
from batchmt.pipeline.commit import OutputLayout, prepare_output
from batchmt.pipeline.corpus import CorpusError, check_schema, open_dataset, partition_fields
from batchmt.pipeline.glossary_files import load_glossary
from batchmt.pipeline.lease import LeaseRecord, acquire, release
from batchmt.pipeline.shards import Plan, plan_shards
from batchmt.pipeline.spec import JobSpec


@dataclass(frozen=True)
class Prepared:
    """A job ready to run: where its output goes and the plan to run (the stored one when
    resuming)."""

    layout: OutputLayout
    plan: Plan
    state: Literal["new", "resume"]
    fingerprint: str  # of the spec, as recorded in the manifest
    lease: LeaseRecord  # held from here on: renew it (lease.Heartbeat), release it at the end


def make_plan(spec: JobSpec) -> Plan:
    """Plan from Parquet metadata only; fails on a schema problem with one line."""
    dataset = open_dataset(spec.input)
    check_schema(dataset, spec.input)
    # An input column of the same name would be silently overwritten: refuse it up front.
    clash = [c for c in written_columns(spec.input.translation_column) if c in dataset.schema.names]
    if clash:
        raise CorpusError(
            f"input already has column(s) {', '.join(clash)}, which batchmt writes; "
            "rename them in the input (they would be overwritten)"
        )
    # Output partitions: output.partition_by, else the input's; shards never span two.
    partitions = partition_fields(dataset)
    split_on = spec.output.partition_by or partitions
    unknown = [c for c in split_on if c not in partitions]
    if unknown:
        raise CorpusError(
            f"output.partition_by names {', '.join(unknown)}, which is not a partition column "
            f"of the input (its partition columns: {', '.join(partitions) or 'none'}); "
            "change output.partition_by or partition the input folders by it (col=value/)"
        )
    return plan_shards(dataset, spec.input, spec.sharding, split_on=split_on)


def prepare(spec: JobSpec, base_dir: str | None = None) -> Prepared:
    """Plan, check the glossary, take the output's lease, then claim the output: new,
    resume, or OutputConflictError (LeaseHeldError while another driver holds it)."""
    layout = OutputLayout.for_job(spec)  # a table output: this spec's folder in the table
    plan = make_plan(spec)
    if spec.glossary.path:
        # A bad glossary file fails here, before any output is claimed or worker started.
        load_glossary(
            spec.glossary.path, spec.source_lang, spec.target_lang, spec.glossary.storage_options
        )
    # The output location and the model, before anything is written (jobs/preflight.py).
    preflight(spec, base_dir)
    fingerprint = spec.fingerprint()
    # Taken after planning so that a job with a bad input leaves nothing in the output.
    lease = acquire(layout.fs, layout.root)
    try:
        state, frozen = prepare_output(layout, plan, fingerprint, spec.output.overwrite, lease)
    except BaseException:
        release(layout.fs, layout.root, lease)
        raise
    # Shard files go to the partitions of the frozen plan (an older manifest: none).
    layout = replace(layout, partition_by=tuple(frozen.output_partitions))
    return Prepared(layout, frozen, state, fingerprint, lease)
