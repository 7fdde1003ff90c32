"""`_SUCCESS`: the JSON summary a run writes last, once every shard is output (and, for a
table output, after its commit). It names the run (and lease generation) that completed it.

The driver's summary has many fields (counts, timings, QE, the memory); the ones readers act
on are typed here, and `body` keeps all of them as written. Versions: 0 (no version; some
without `run_id` or `finished_at`, written before runs had ids) and 1.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from batchmt.pipeline.outputs.records.version import VERSION_KEY, format_version

SUCCESS_VERSION = 1


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Success:
    body: dict[str, Any] = field(default_factory=dict)  # the whole summary, as written
    version: int = SUCCESS_VERSION

    @classmethod
    def from_dict(cls, data: Any) -> Success:
        if not isinstance(data, dict):
            raise TypeError("_SUCCESS is not a JSON object")
        return cls(dict(data), format_version(data, SUCCESS_VERSION, "_SUCCESS"))

    @classmethod
    def of(cls, summary: dict[str, Any], run_id: str | None, generation: int | None) -> Success:
        body = dict(summary)
        if run_id is not None:
            body.update(run_id=run_id, lease_generation=generation)
        return cls(body)

    def to_dict(self) -> dict[str, Any]:
        return {**self.body, VERSION_KEY: SUCCESS_VERSION}

    @property
    def run_id(self) -> str:
        """ "" for a _SUCCESS written before runs had ids."""
        return str(self.body.get("run_id") or "")

    @property
    def job_name(self) -> str | None:
        name = self.body.get("job_name")
        return str(name) if name is not None else None

    @property
    def rows_in(self) -> int | None:
        return _int(self.body.get("rows_in"))

    @property
    def finished_at(self) -> datetime.datetime | None:
        """When the run finished (UTC), None when the file does not say."""
        text = self.body.get("finished_at")
        if not isinstance(text, str):
            return None
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)

    @property
    def table(self) -> dict[str, Any] | None:
        """A table output's commit: format, location, the committed version."""
        table = self.body.get("table")
        return dict(table) if isinstance(table, dict) else None

    def run_summary(self) -> dict[str, Any]:
        """The run that finished it: input.since runs also say how many rows were new and
        how many older rows (of earlier runs) their translations replaced."""
        keys = ("run_id", "finished_at", "rows_new", "rows_replaced")
        return {k: self.body[k] for k in keys if k in self.body}

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return str(model) if model is not None else None

    @property
    def languages(self) -> str:
        """ "en -> de"; a side the file does not name is "?"."""
        return f"{self.body.get('source_lang', '?')} -> {self.body.get('target_lang', '?')}"
