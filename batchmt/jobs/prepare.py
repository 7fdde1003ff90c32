"""Before any work: check the input and glossary, plan shards, claim (or resume) the output.

Everything here fails fast with one line, before a worker starts or a model loads. The
output is claimed under its lease (pipeline/outputs/lease.py): a second driver on the same output
stops here, naming the one that holds it, before it deletes or writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import structlog

from batchmt.jobs.preflight import preflight
from batchmt.pipeline.inputs.plan import plan_input
from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.inputs.sources.increments import (
    SINCE,
    PreviousState,
    increment_key,
    readable_source,
)
from batchmt.pipeline.outputs.commit import prepare_output
from batchmt.pipeline.outputs.layout import OutputConflictError, OutputLayout, read_manifest
from batchmt.pipeline.outputs.lease import LeaseRecord, acquire, release
from batchmt.pipeline.outputs.runs import previous_state, successful_runs
from batchmt.pipeline.spec import JobSpec
from batchmt.pipeline.storage.fs import StorageError, open_fs
from batchmt.pipeline.text.glossary_files import load_glossary

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A job ready to run: where its output goes and the plan to run (the stored one when
    resuming)."""

    layout: OutputLayout
    plan: Plan
    state: Literal["new", "resume"]
    fingerprint: str  # of the spec, as recorded in the manifest
    lease: LeaseRecord  # held from here on: renew it (lease.Heartbeat), release it at the end


def make_plan(spec: JobSpec, version: int | None = None) -> Plan:
    """Plan from table logs and Parquet metadata only; fails on a schema problem with one
    line. `version`: a resume's pinned Delta version / Iceberg snapshot (else input.version,
    else the latest). No shard spans two output partitions (output.partition_by, else the
    input's partition columns).

    With input.since only the rows new since then are planned; `since: last` starts where
    the last successful run of this job into the same output left off (none: everything).
    """
    previous = _last_run_state(spec) if spec.input.since == "last" else None
    plan = plan_input(spec.input, spec.sharding, spec.output.partition_by, version, previous)
    since = readable_source(plan.source).get(SINCE)
    if isinstance(since, dict):
        log.info("increment_planned", **since, shards=len(plan.shards))
    return plan


def _last_run_state(spec: JobSpec) -> PreviousState | None:
    """The input state the last successful run covered; None when there is none, or when
    output.overwrite replaces what the earlier runs wrote."""
    if spec.output.overwrite:
        return None
    fs, root = open_fs(spec.output.path, spec.output.storage_options)
    return previous_state(successful_runs(fs, root, spec.job_name), spec.input)


def _pinned_version(layout: OutputLayout, spec: JobSpec) -> int | None:
    """The table version a resumable manifest froze: a resume must plan the same version
    (the latest may have moved on), or its pinned files would look gone."""
    if spec.output.overwrite:
        return None
    try:
        stored = read_manifest(layout)
    except (OutputConflictError, ValueError, OSError):  # OSError: no folder there
        return None  # prepare_output reports a broken manifest, where it always did
    if stored is None or stored[0] != spec.fingerprint():
        return None
    version = stored[1].source.get("version")
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def _cannot_write(spec: JobSpec, what: str, exc: OSError) -> StorageError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return StorageError(
        f"cannot {what} in output {spec.output.path}: {reason} (errno {exc.errno}); free "
        "space or fix the location, then rerun"
    )


def _claimed_by(layout: OutputLayout, spec: JobSpec) -> bool:
    """Whether the output's manifest is this spec's (a resume, or a finished job)."""
    if spec.output.overwrite:
        return False
    try:
        stored = read_manifest(layout)
    except (OutputConflictError, ValueError, OSError):
        return False
    return stored is not None and stored[0] == spec.fingerprint()


def prepare(spec: JobSpec, base_dir: str | None = None) -> Prepared:
    """Plan, check the glossary, take the output's lease, then claim the output: new,
    resume, or OutputConflictError (LeaseHeldError while another driver holds it)."""
    layout = OutputLayout.for_job(spec)  # a table output: this spec's folder in the table
    plan = make_plan(spec, _pinned_version(layout, spec))
    increment = increment_key(plan.source)
    if increment:
        # input.since: each increment has its own folder (and a table output its own
        # commit; a Parquet output its own data files); a killed run's increment resumes
        # its folder, at the version it pinned. A finished one is never resumed: the next
        # run starts where it ended, which is another increment key.
        layout = OutputLayout.for_job(spec, increment=increment)
        pinned = _pinned_version(layout, spec)
        if pinned is not None and pinned != plan.source.get("version"):
            plan = make_plan(spec, pinned)
    if spec.glossary.path:
        # A bad glossary file fails here, before any output is claimed or worker started.
        load_glossary(
            spec.glossary.path, spec.source_lang, spec.target_lang, spec.glossary.storage_options
        )
    # The output location and the model, before anything is written (jobs/preflight.py).
    # The language canary ran when this spec claimed the output: a resume skips it.
    preflight(spec, base_dir, None if _claimed_by(layout, spec) else plan)
    fingerprint = spec.fingerprint()
    # Taken after planning so that a job with a bad input leaves nothing in the output.
    try:
        lease = acquire(layout.fs, layout.root)
    except StorageError:
        raise
    except OSError as exc:  # a full disk, a read-only mount: one line, before any work
        raise _cannot_write(spec, "take its lease", exc) from None
    try:
        state, frozen = prepare_output(layout, plan, fingerprint, spec.output.overwrite, lease)
    except BaseException as exc:
        try:
            release(layout.fs, layout.root, lease)
        except OSError as gone:  # the same full disk: the lease then expires after its TTL
            log.warning("lease_not_released", error=str(gone))
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise _cannot_write(spec, "write its manifest", exc) from None
        raise
    # Shard files go to the partitions of the frozen plan (an older manifest: none).
    layout = replace(layout, partition_by=tuple(frozen.output_partitions))
    return Prepared(layout, frozen, state, fingerprint, lease)
