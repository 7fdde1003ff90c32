"""Incremental runs (`input.since`): of the files a listing plans, only the new ones.

One rule for every format: new = the files live now minus the files live at the earlier
state, by path.

- Delta: the state is a table version; its live files come from the log at that version
  (the files added since). The change data feed is not used: its update and delete rows
  live in `_change_data/` files that are not the table's rows, and a plan reads whole row
  groups of data files.
- Iceberg: the state is a snapshot id; its data files.
- Parquet folders: the state is the set of files an earlier run saw, by path plus identity
  (size and mtime, or ETag), kept as 64-bit digests in the plan (`since.seen`).

A file rewritten by a Delta / Iceberg delete, update, merge or compaction, or a Parquet file
rewritten in place, is new: all its rows are translated again. That is how an updated row
(same id, new text) gets its new translation; its unchanged neighbours in the same file are
translated again too (the cost of working file by file). Replacing the earlier translation
of an id is the output's job.

The state a run covered is the input as that run planned it (a table's version, a folder's
files), so `since: last` continues from there. `since: <timestamp>` is the table version /
snapshot current at that time; for Parquet folders, the files modified after it.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from batchmt.pipeline.inputs.corpus import CorpusError
from batchmt.pipeline.inputs.sources.listing import InputFile, Listing, modified_at
from batchmt.pipeline.spec import InputSpec

SinceMode = Literal["last", "version", "timestamp"]
# The plan's `source["since"]`; `seen` there is what the next `since: last` run of a
# Parquet folder compares with.
SINCE = "since"
_DIGEST = "sha256-64"
_DIGEST_BYTES = 8  # 64 bits: a collision among a million files has odds of about 1e-8


@dataclass(frozen=True)
class PreviousState:
    """Where an increment starts: a table version / snapshot id, or the Parquet files seen."""

    # Delta version / Iceberg snapshot id; None for Parquet, or a table that had none yet.
    version: int | None = None
    # Parquet: digests of the files (path + identity) the earlier state held.
    seen: frozenset[bytes] = frozenset()
    # Parquet since a timestamp: files modified after it (POSIX seconds) are new.
    after: float | None = None
    # How the plan and the log name it (`since.from`): run id, version, time...
    summary: dict[str, Any] = field(default_factory=dict)


def since_mode(since: str | int) -> SinceMode:
    if since == "last":
        return "last"
    return "version" if isinstance(since, int) else "timestamp"


def since_time(text: str) -> datetime.datetime:
    """An `input.since` timestamp; one without a zone is UTC (as delta-rs reads it)."""
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.timezone.utc)


def readable_source(source: Mapping[str, Any]) -> dict[str, Any]:
    """A plan's source for logs, `_SUCCESS`, table commit properties and `batchmt status`:
    the Parquet seen-set (8 bytes a file, base64) is left out, its count kept."""
    since = source.get(SINCE)
    if not isinstance(since, dict) or "seen" not in since:
        return dict(source)
    seen = since["seen"]
    count = seen.get("count") if isinstance(seen, dict) else None
    short = {k: v for k, v in since.items() if k != "seen"}
    return {**source, SINCE: {**short, "files_seen": count}}


def increment_key(source: Mapping[str, Any]) -> str:
    """A short name for an increment, from where it starts (`since.from`) and how: the same
    until a run of it succeeds, so a rerun after a kill finds the killed run's folder (and
    resumes its pinned version), and the next increment gets a new one. "" without since."""
    since = source.get(SINCE)
    if not isinstance(since, dict):
        return ""
    start = json.dumps([since.get("mode"), since.get("from")], sort_keys=True, default=str)
    return hashlib.sha256(start.encode()).hexdigest()[:8]


# ----------------------------------------------------------------------------------------
# Parquet file identities, as compact digests


def _identity(info: Mapping[str, Any]) -> dict[str, Any]:
    """What tells a rewritten file from the old one, in a form that a detailed listing and
    `fs.info()` agree on: size plus ETag (S3 lists and HEADs give the same one), else the
    modification time (local; S3 LastModified differs in precision between the two)."""
    out: dict[str, Any] = {"size": info.get("size")}
    for key in ("ETag", "etag", "generation"):
        if info.get(key):
            out["tag"] = str(info[key]).strip('"')
            return out
    for key in ("mtime", "LastModified", "updated"):
        value = info.get(key)
        if value is not None:
            out["mtime"] = value if isinstance(value, (int, float, str)) else str(value)
            return out
    return out


def file_digest(path: str, info: Mapping[str, Any]) -> bytes:
    """A file's path and identity (size, ETag or mtime) as 8 bytes."""
    text = json.dumps([path, _identity(info)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).digest()[:_DIGEST_BYTES]


def digests_of_inputs(inputs: Mapping[str, Mapping[str, Any]]) -> frozenset[bytes]:
    """The files a plan read (`Plan.inputs`, identities from fs.info) as digests."""
    return frozenset(file_digest(path, identity) for path, identity in inputs.items())


def encode_seen(digests: Iterable[bytes]) -> dict[str, Any]:
    """Digests as one base64 string (sorted: the same files give the same text)."""
    ordered = sorted(set(digests))
    data = base64.b64encode(b"".join(ordered)).decode("ascii")
    return {"digest": _DIGEST, "count": len(ordered), "data": data}


def decode_seen(obj: Any) -> frozenset[bytes]:
    """`encode_seen` read back; ValueError when it is not one (another digest, damaged)."""
    if not isinstance(obj, dict) or obj.get("digest") != _DIGEST:
        raise ValueError(f"not a {_DIGEST} digest set")
    raw = base64.b64decode(str(obj.get("data", "")), validate=True)
    if len(raw) % _DIGEST_BYTES or len(raw) // _DIGEST_BYTES != obj.get("count"):
        raise ValueError("digest set length does not match its count")
    return frozenset(raw[i : i + _DIGEST_BYTES] for i in range(0, len(raw), _DIGEST_BYTES))


# ----------------------------------------------------------------------------------------
# From input.since to the earlier state


def explicit_state(input_spec: InputSpec, kind: str, since: int | str) -> PreviousState:
    """The state `since: <version / snapshot id>` or `since: <timestamp>` names."""
    where = input_spec.table or input_spec.path
    if isinstance(since, int):
        if kind == "parquet":
            raise CorpusError(
                f"input.since {since} names a Delta version or Iceberg snapshot, but {where} "
                "is Parquet files; set input.since to 'last' or an ISO timestamp"
            )
        return PreviousState(version=since, summary={"version": since})
    when = since_time(since)
    now = datetime.datetime.now(datetime.timezone.utc)
    if when > now:
        # Nothing is new since a time still to come: the run would plan nothing and, worse,
        # record every file as seen, so no later `since: last` run would translate them.
        raise CorpusError(
            f"input.since {since} is in the future (now {now.isoformat(timespec='seconds')}); "
            "set a past time, a version, or 'last'"
        )
    summary: dict[str, Any] = {"timestamp": when.isoformat()}
    if kind == "parquet":
        return PreviousState(after=when.timestamp(), summary=summary)
    version: int | None
    if kind == "delta":
        from batchmt.pipeline.inputs.sources.delta import version_at

        version = version_at(input_spec, when)
    else:
        from batchmt.pipeline.inputs.sources.iceberg import snapshot_at

        version = snapshot_at(input_spec, int(when.timestamp() * 1000))
    return PreviousState(version=version, summary={**summary, "version": version})


# ----------------------------------------------------------------------------------------
# The new files


def select_new(
    input_spec: InputSpec, listing: Listing, previous: PreviousState | None, mode: SinceMode
) -> Listing:
    """`listing` (live files, filtered) cut to the files new since `previous` (None: no
    earlier state, every file is new); `source["since"]` says what was chosen."""
    kind = str(listing.source.get("format") or "parquet")
    record: dict[str, Any] = {
        "mode": mode,
        "from": dict(previous.summary) if previous is not None else None,
        "to": listing.source.get("version"),
    }
    if kind == "parquet":
        new, record["seen"] = _new_parquet(input_spec, listing, previous)
    else:
        new = _new_table(input_spec, listing, previous, kind)
    kept = {f.path for f in new}
    old = [f for f in listing.files if f.path not in kept]
    record["files_new"] = len(new)
    record["files_already_seen"] = len(old)
    counts = [f.rows for f in old]
    record["rows_already_seen"] = (
        sum(c for c in counts if c is not None) if None not in counts else None
    )
    return replace(listing, files=new, source={**listing.source, SINCE: record})


def _new_table(
    input_spec: InputSpec, listing: Listing, previous: PreviousState | None, kind: str
) -> list[InputFile]:
    now = listing.source.get("version")
    if previous is None or previous.version is None:
        return list(listing.files)
    if previous.version == now:
        return []
    where = input_spec.table or input_spec.path
    if kind == "delta":
        from batchmt.pipeline.inputs.sources.delta import live_paths

        if isinstance(now, int) and previous.version > now:
            raise CorpusError(
                f"input.since: Delta table {where} version {previous.version} is after "
                f"version {now}, the one this run reads; set input.since to an earlier "
                "version (or input.version to a later one)"
            )
        before = live_paths(input_spec, previous.version)
    else:
        from batchmt.pipeline.inputs.sources.iceberg import data_file_paths

        # Snapshot ids are not ordered: any earlier snapshot (an ancestor, or one rolled
        # back from) subtracts the same way.
        before = data_file_paths(input_spec, previous.version)
    return [f for f in listing.files if f.path not in before]


def _new_parquet(
    input_spec: InputSpec, listing: Listing, previous: PreviousState | None
) -> tuple[list[InputFile], dict[str, Any]]:
    """New Parquet files, and the seen-set the next `since: last` run starts from: every
    file live now (this run translates the new ones; the others an earlier run did)."""
    from batchmt.pipeline.inputs.sources.hive import file_details

    details = file_details(input_spec, [f.path for f in listing.files])
    digests = {f.path: file_digest(f.path, details[f.path]) for f in listing.files}
    if previous is None:
        new = list(listing.files)
    elif previous.after is not None:
        after = previous.after

        def modified_since(f: InputFile) -> bool:
            written = modified_at(details[f.path])
            return written is None or written > after  # unknown: translate, never skip

        new = [f for f in listing.files if modified_since(f)]
    else:
        new = [f for f in listing.files if digests[f.path] not in previous.seen]
    return new, encode_seen(digests.values())
