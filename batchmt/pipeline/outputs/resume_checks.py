"""What a resume must check before it trusts `_manifest.json`.

A manifest is read back from storage that other people and tools can write, and a resume
acts on it: shard ids become output keys, slices name the rows a worker reads. So before a
stored plan runs again it is checked against a fresh plan of the same `input.path`:

- every shard id is digits only and unique (keys stay under the output),
- every slice names a file that `input.path` lists now, inside that file's row groups, and
  the slices of each planned row group cover it exactly once (no row twice, none lost),
- row counts add up (slices -> shard -> plan),
- every pinned input file is unchanged (size, mtime / ETag / version id, row groups):
  rows that moved between a kill and a resume would otherwise be translated twice or never,
- a table input is planned at the same Delta version / Iceberg snapshot, whose files must
  all still exist (VACUUM or expire_snapshots may have removed them).
"""

from __future__ import annotations

from collections import defaultdict

from batchmt.pipeline.errors import BatchmtError
from batchmt.pipeline.inputs.shards import SHARD_ID_PATTERN, Plan

_START_OVER = "use --set output.overwrite=true to start over, or choose another output.path"
_SHOWN = 5  # files or shards named in one message


class ManifestError(BatchmtError, ValueError):
    """The stored plan is inconsistent or names things outside the job: not resumable."""


class InputChangedError(BatchmtError, ValueError):
    """An input file pinned by the manifest was rewritten, replaced or removed."""


def _names(items: list[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def check_resumable(stored: Plan, fresh: Plan, manifest_path: str) -> None:
    """Raise ManifestError or InputChangedError unless `stored` can run again as it is."""
    _check_source(stored, fresh, manifest_path)
    _check_structure(stored, fresh, manifest_path)
    _check_inputs_unchanged(stored, fresh, manifest_path)
    _check_coverage(stored, fresh, manifest_path)


def _bad(manifest_path: str, what: str) -> ManifestError:
    return ManifestError(f"{manifest_path} cannot be resumed: {what}; {_START_OVER}")


def _describe(source: dict[str, object]) -> str:
    kind = source.get("format") or "parquet"
    if kind == "parquet":
        return "Parquet files"
    what = "version" if kind == "delta" else "snapshot"
    return f"{kind} table {what} {source.get('version')}"


def _check_source(stored: Plan, fresh: Plan, manifest_path: str) -> None:
    """The same kind of input, and for a table the same version (prepare plans the
    manifest's version again, so a difference means the input itself changed kind)."""
    before, now = stored.source or {"format": "parquet"}, fresh.source or {"format": "parquet"}
    if (before.get("format"), before.get("version")) != (now.get("format"), now.get("version")):
        raise _bad(
            manifest_path,
            f"it was planned from {_describe(before)}, the input now plans {_describe(now)}",
        )


def _check_structure(stored: Plan, fresh: Plan, manifest_path: str) -> None:
    if stored.input_path != fresh.input_path:
        raise _bad(
            manifest_path,
            f"it was planned for input {stored.input_path!r}, not {fresh.input_path!r}",
        )
    ids = [s.shard_id for s in stored.shards]
    bad_ids = [repr(i) for i in ids if not SHARD_ID_PATTERN.fullmatch(i)]
    if bad_ids:
        raise _bad(manifest_path, f"shard id(s) {_names(bad_ids)} are not plain digits")
    if len(set(ids)) != len(ids):
        raise _bad(manifest_path, "a shard id appears twice")
    total = 0
    for shard in stored.shards:
        for piece in shard.slices:
            if piece.row_group < 0 or piece.offset < 0 or piece.length <= 0:
                raise _bad(manifest_path, f"shard {shard.shard_id} has a malformed slice")
        if sum(p.length for p in shard.slices) != shard.num_rows:
            raise _bad(
                manifest_path, f"shard {shard.shard_id}'s slices do not add up to its num_rows"
            )
        total += shard.num_rows
    if total != stored.num_rows:
        raise _bad(manifest_path, f"shards hold {total} rows, the plan says {stored.num_rows}")
    outside = sorted({p.path for s in stored.shards for p in s.slices} - set(fresh.inputs))
    missing_pinned = [p for p in outside if p in stored.inputs]
    foreign = [p for p in outside if p not in stored.inputs]
    if foreign:
        raise _bad(
            manifest_path,
            f"it reads file(s) that input.path {fresh.input_path} does not list: {_names(foreign)}",
        )
    if missing_pinned and stored.source.get("format") in ("delta", "iceberg"):
        raise InputChangedError(
            f"file(s) {_names(missing_pinned)} of {_describe(stored.source)}, which "
            f"{manifest_path} reads, are gone (removed by VACUUM / expire_snapshots?); the "
            f"resume would lose their rows. {_START_OVER}"
        )
    if missing_pinned:
        raise InputChangedError(
            f"input file(s) {_names(missing_pinned)} of {manifest_path} are gone since the "
            f"job started; the resume would lose their rows. {_START_OVER}"
        )


def _check_inputs_unchanged(stored: Plan, fresh: Plan, manifest_path: str) -> None:
    """Compare the pinned identities with the files as they are now."""
    changed = []
    for path, pinned in sorted(stored.inputs.items()):
        now = fresh.inputs.get(path)
        if now is None:
            continue  # not read by any slice (else _check_structure refused): nothing lost
        keys = set(pinned) & set(now)
        if any(pinned[k] != now[k] for k in keys):
            changed.append(path)
    if changed:
        raise InputChangedError(
            f"input file(s) {_names(changed)} changed since {manifest_path} was written; "
            f"resuming would mix rows of two versions. {_START_OVER}"
        )


def _check_coverage(stored: Plan, fresh: Plan, manifest_path: str) -> None:
    """Each planned row group is cut into slices that cover it exactly once."""
    cuts: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    partitions = {p.path: p.partition for s in fresh.shards for p in s.slices}
    for shard in stored.shards:
        for piece in shard.slices:
            if piece.path in partitions and piece.partition != partitions[piece.path]:
                raise _bad(manifest_path, f"shard {shard.shard_id} relabels {piece.path}")
            cuts[(piece.path, piece.row_group)].append((piece.offset, piece.length))
    for (path, row_group), pieces in sorted(cuts.items()):
        sizes = fresh.inputs[path].get("row_groups", [])
        if row_group >= len(sizes):
            raise _bad(manifest_path, f"{path} has no row group {row_group}")
        position = 0
        for offset, length in sorted(pieces):
            if offset != position:
                raise _bad(
                    manifest_path,
                    f"row group {row_group} of {path} is read twice or has a gap at row "
                    f"{min(offset, position)}",
                )
            position = offset + length
        if position != sizes[row_group]:  # also catches slices past the end of the file
            raise _bad(
                manifest_path,
                f"slices of row group {row_group} of {path} cover {position} rows; the file "
                f"has {sizes[row_group]}",
            )
    for path in sorted({path for path, _ in cuts}):
        for row_group, rows in enumerate(fresh.inputs[path].get("row_groups", [])):
            if rows and (path, row_group) not in cuts:
                raise _bad(manifest_path, f"no shard reads row group {row_group} of {path}")
