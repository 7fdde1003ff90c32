"""Completion markers, `_completions/<shard>`: the shard's counts, written LAST.

From the marker on the shard is output. The marker carries the run id and lease generation
of the driver that wrote it; which markers count is the manifest's call (records/manifest.py:
a fenced-out driver's late markers never do). One listing of `_completions/` tells a rerun
what is left; reads of many small files go through a thread pool (latency-bound on S3).

Versions: 0 (markers without a version, and without a run id before fencing: they belong
to LEGACY_RUN) and 1.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from batchmt.pipeline.inputs.shards import SHARD_ID_PATTERN
from batchmt.pipeline.outputs.layout import OutputLayout, load_manifest
from batchmt.pipeline.outputs.lease import LeaseLostError
from batchmt.pipeline.outputs.records.version import VERSION_KEY, format_version
from batchmt.pipeline.results import ShardResult
from batchmt.pipeline.storage.fs import (
    create_exclusive,
    json_bytes,
    list_names,
    read_json,
    write_json,
)

log = logging.getLogger(__name__)

MARKER_VERSION = 1
_READ_THREADS = 16  # completion/quality files are tiny: latency-bound on S3
# The run id of markers written before markers carried one (and of bare API callers).
LEGACY_RUN = "legacy"


@dataclass(frozen=True)
class CompletionMarker:
    result: ShardResult
    run_id: str = LEGACY_RUN
    lease_generation: int | None = None
    version: int = MARKER_VERSION

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {VERSION_KEY: MARKER_VERSION, **self.result.to_dict()}
        if self.run_id != LEGACY_RUN or self.lease_generation is not None:
            body.update(run_id=self.run_id, lease_generation=self.lease_generation)
        return body

    @classmethod
    def from_dict(cls, data: Any, shard_id: str) -> CompletionMarker:
        """A marker from its JSON; `shard_id` is its file's name (older markers lack it)."""
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        version = format_version(data, MARKER_VERSION, f"completion marker {shard_id}")
        generation = data.get("lease_generation")
        return cls(
            ShardResult.from_dict({"shard_id": shard_id, **data}),
            str(data.get("run_id", LEGACY_RUN)),
            generation if isinstance(generation, int) else None,
            version,
        )


def read_many(layout: OutputLayout, paths: dict[str, str]) -> dict[str, Any]:
    """{key: JSON} of many small files at once; unreadable ones are left out with a warning."""

    def read(item: tuple[str, str]) -> tuple[str, Any]:
        key, path = item
        try:
            return key, read_json(layout.fs, path)
        except ValueError as exc:
            log.warning("ignoring %s: %s", path, exc)
            return key, None

    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        pairs = list(pool.map(read, sorted(paths.items())))
    return {key: value for key, value in pairs if value is not None}


def write_marker(layout: OutputLayout, marker: CompletionMarker) -> None:
    """Publish the marker; one with a lease generation never replaces a newer one.

    A driver checks its lease just before this write, but a driver paused between the
    check and the write (a GC pause, a stopped process) would otherwise overwrite the
    marker the new holder wrote for the same shard with its own, which does not count:
    the shard would read as not done after the job succeeded. So the marker is created
    only where none exists (storage's compare-and-set); an existing one is replaced only
    when it is of this generation or an older one, and a newer one stops this driver.
    """
    path = layout.completion(marker.result.shard_id)
    ours = marker.lease_generation
    if ours is None:  # bare API callers and tests: no lease to fence
        write_json(layout.fs, path, marker.to_dict())
        return
    try:
        create_exclusive(layout.fs, path, json_bytes(marker.to_dict()))
        return
    except FileExistsError:
        pass
    existing = read_json(layout.fs, path)
    existing = existing if isinstance(existing, dict) else {}
    theirs = existing.get("lease_generation")
    if isinstance(theirs, int) and theirs > ours:
        raise LeaseLostError(
            f"lost the lease on {layout.root} (generation {ours}, run {marker.run_id}): run "
            f"{existing.get('run_id')} of generation {theirs} has completed shard "
            f"{marker.result.shard_id}; "
            "this driver stops, its marker is not written"
        )
    write_json(layout.fs, path, marker.to_dict())


def completed_shard_ids(layout: OutputLayout) -> set[str]:
    """Ids of completed shards from one listing (cheap: no reads)."""
    return set(list_names(layout.fs, layout.completions_dir))


def counted_markers(layout: OutputLayout) -> dict[str, CompletionMarker]:
    """{shard_id: marker} for the markers that count; {} when none.

    With a manifest, only planned shards count, and only markers of its current run or
    carried over from an earlier run.
    """
    manifest = load_manifest(layout)
    # A stray name in the folder is no marker (and must never become a path).
    ids = {sid for sid in completed_shard_ids(layout) if SHARD_ID_PATTERN.fullmatch(sid)}
    if manifest is not None:
        planned = {s.shard_id for s in manifest.plan.shards}
        ids = {sid for sid in ids if sid in planned}
    bodies = read_many(layout, {sid: layout.completion(sid) for sid in ids})
    done = {}
    for sid, body in bodies.items():
        try:
            marker = CompletionMarker.from_dict(body, sid)
        except (TypeError, ValueError) as exc:
            log.warning("ignoring %s: %s", layout.completion(sid), exc)
            continue
        if manifest is not None and not manifest.counts(sid, marker.run_id):
            log.warning("ignoring %s: written by run %s, which lost the output", sid, marker.run_id)
            continue
        done[sid] = marker
    return done


def completed_shards(layout: OutputLayout) -> dict[str, ShardResult]:
    """{shard_id: its result} for every completed shard that counts; {} when none."""
    return {sid: marker.result for sid, marker in counted_markers(layout).items()}
