"""`_manifest.json`: the frozen plan and spec fingerprint, the first file a run writes.

Fencing: the manifest lists the runs (driver leases) that worked on it. A marker counts when
the current run wrote it, or when the current run found it at its start (`carried`): a
marker that a driver writes after it lost the lease to a newer run never counts.

Versions: 0 (none written) and 1 have the same fields; `runs`/`carried` are absent in
manifests of bare API callers and older runs (then every marker counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.outputs.records.version import VERSION_KEY, format_version

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    spec_fingerprint: str
    plan: Plan
    # Run ids in lease order, the last one current; None for manifests of bare API callers
    # and older versions (then every marker counts).
    runs: list[str] | None = None
    # {shard_id: run_id} of earlier runs' markers the current run found at its start.
    carried: dict[str, str] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def counts(self, shard_id: str, run_id: str) -> bool:
        """Whether a marker of `run_id` for `shard_id` is output (module docstring)."""
        if self.runs is None:
            return True
        if self.runs and run_id == self.runs[-1]:
            return True
        return self.carried.get(shard_id) == run_id

    @property
    def current_run(self) -> str | None:
        return self.runs[-1] if self.runs else None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            VERSION_KEY: MANIFEST_VERSION,
            "spec_fingerprint": self.spec_fingerprint,
            "plan": self.plan.to_dict(),
        }
        if self.runs is not None:
            data.update(runs=self.runs, carried=self.carried)
        return data


def parse_manifest(data: Mapping[str, Any]) -> Manifest:
    """A manifest from its JSON; KeyError/TypeError/ValueError when it is none (or newer)."""
    if not isinstance(data, Mapping):
        raise TypeError("not a JSON object")
    version = format_version(data, MANIFEST_VERSION, "_manifest.json")
    runs = data.get("runs")
    return Manifest(
        str(data["spec_fingerprint"]),
        Plan.from_dict(data["plan"]),
        [str(r) for r in runs] if isinstance(runs, list) else None,
        {str(k): str(v) for k, v in (data.get("carried") or {}).items()},
        version,
    )
