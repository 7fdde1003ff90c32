"""The Python API: the same jobs as the `batchmt` command line, from a notebook or a script."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchmt.pipeline.spec import JobSpec, SpecError, load_spec, spec_from_dict

if TYPE_CHECKING:
    import pyarrow as pa

    from batchmt.jobs.driver import JobOutcome
    from batchmt.pipeline.shards import Plan

Config = JobSpec | Mapping[str, Any] | str | Path


def load_config(config: Config, overrides: Sequence[str] = ()) -> JobSpec:
    """A validated JobSpec from a YAML path, a dict or a spec; `overrides` are `--set` items."""
    if isinstance(config, JobSpec):
        if not overrides:
            return config
        return spec_from_dict(config.model_dump(mode="json"), list(overrides))
    if isinstance(config, str | Path):
        return load_spec(config, list(overrides))
    if isinstance(config, Mapping):
        return spec_from_dict(dict(config), list(overrides))
    raise SpecError(
        f"config must be a YAML path, a dict or a batchmt.JobSpec, not {type(config).__name__}"
    )


def run(
    config: Config,
    overrides: Sequence[str] = (),
    *,
    base_dir: str | Path | None = None,
    show_progress: bool = False,
) -> JobOutcome:
    """Run (or resume) a job and return its outcome; raises `JobFailed` when shards failed.

    `base_dir` is where relative paths in the config resolve on the workers (default: the
    current directory), as for `batchmt run`.
    """
    from batchmt.jobs.driver import run_job

    spec = load_config(config, overrides)
    return run_job(spec, base_dir=str(base_dir or Path.cwd()), show_progress=show_progress)


def plan(config: Config, overrides: Sequence[str] = ()) -> Plan:
    """The shard plan, from Parquet metadata only (nothing is translated or written)."""
    from batchmt.jobs.prepare import make_plan

    return make_plan(load_config(config, overrides))


def read_output(
    path: str | Path,
    *,
    storage_options: Mapping[str, Any] | None = None,
    as_ray_dataset: bool = False,
) -> Any:
    """A job's published rows: a pyarrow Table, or a `ray.data.Dataset` when asked.

    Only shards with a completion marker are read: a shard being rewritten by a running job
    is never half-visible.
    """
    from batchmt.pipeline.commit import OutputLayout, completed_shard_ids
    from batchmt.pipeline.storage import open_fs

    fs, root = open_fs(str(path), dict(storage_options or {}))
    layout = OutputLayout(fs, root.rstrip("/"))
    files = [layout.data(shard_id) for shard_id in sorted(completed_shard_ids(layout))]
    if as_ray_dataset:
        try:
            import ray.data
        except ImportError as exc:
            raise ImportError(
                f"read_output(as_ray_dataset=True) needs Ray Data ({exc}); install it with "
                "pip install 'batchmt[data]'"
            ) from exc
        return ray.data.read_parquet(files, filesystem=fs) if files else ray.data.from_items([])
    return _read_tables(fs, files)


def _read_tables(fs: Any, files: list[str]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not files:
        return pa.table({})
    tables = [pq.read_table(f, filesystem=fs) for f in files]
    return pa.concat_tables(tables, promote_options="default")
