"""The Python API: the same jobs as the `batchmt` command line, from a notebook or a script."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchmt.pipeline.spec import JobSpec, SpecError, load_spec, spec_from_dict

if TYPE_CHECKING:
    import pyarrow as pa

    from batchmt.jobs.driver import JobOutcome
    from batchmt.pipeline.inputs.shards import Plan

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

    `base_dir` is where every relative path in the config resolves (input, output,
    glossary, cache, model; default: the current directory), as for `batchmt run`
    (pipeline/storage/paths.py). Events go to stdlib `logging` under `batchmt`, never to
    stdout.
    """
    from batchmt.jobs.driver import run_job

    spec = with_base_dir(load_config(config, overrides), base_dir)
    return run_job(spec, base_dir=str(base_dir or Path.cwd()), show_progress=show_progress)


def plan(
    config: Config, overrides: Sequence[str] = (), *, base_dir: str | Path | None = None
) -> Plan:
    """The shard plan, from Parquet metadata only (nothing is translated or written)."""
    from batchmt.jobs.prepare import make_plan

    return make_plan(with_base_dir(load_config(config, overrides), base_dir))


def with_base_dir(spec: JobSpec, base_dir: str | Path | None) -> JobSpec:
    """Every relative local path of `spec` made absolute under `base_dir` (None: as is)."""
    if base_dir is None:
        return spec
    from batchmt.pipeline.storage.paths import under

    root = str(Path(base_dir).absolute())
    data = spec.model_dump(mode="json")
    for section, key in (("input", "path"), ("output", "path"), ("glossary", "path"),
                         ("cache", "path")):  # fmt: skip
        data[section][key] = under(data[section].get(key), root)
    model = data["model"]["name_or_path"]
    if (Path(root) / model).is_dir():  # a local folder, not a hub id such as org/name
        data["model"]["name_or_path"] = under(model, root)
    return spec_from_dict(data)


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
    from batchmt.pipeline.outputs.commit import OutputLayout, completed_shard_ids, table_job_roots
    from batchmt.pipeline.storage.fs import open_fs

    fs, root = open_fs(str(path), dict(storage_options or {}))
    if not fs.isdir(root):
        from batchmt.pipeline.storage.paths import where

        raise FileNotFoundError(
            f"no job output at {path}{where(str(path))}; pass a job's output.path"
        )
    # A partitioned output files shards in hive folders (the manifest says which); a table
    # output's job is read from its folder, <table>/_batchmt/<job key>.
    layout = OutputLayout.read(fs, root)
    # A Parquet output of input.since runs: every run's files (each id is in one of them).
    runs = [] if layout.is_table or fs.exists(layout.manifest) else table_job_roots(fs, root)
    layouts = [OutputLayout.read(fs, run) for run in runs] or [layout]
    layouts = [one for one in layouts if not one.is_table]
    if runs and layouts:
        layout = layouts[0]
    pairs = [(one, sid) for one in layouts for sid in sorted(completed_shard_ids(one))]
    files = [one.data(shard_id) for one, shard_id in pairs]
    partitions = [dict(one.partitions.get(sid, {})) for one, sid in pairs]
    if as_ray_dataset:
        try:
            import ray.data
        except ImportError as exc:
            raise ImportError(
                f"read_output(as_ray_dataset=True) needs Ray Data ({exc}); install it with "
                "pip install 'batchmt[data]'"
            ) from exc
        if files and layout.partition_by:  # the partition columns are the folder names
            from ray.data.datasource import Partitioning, PartitionStyle

            hive = Partitioning(PartitionStyle.HIVE, base_dir=layout.data_dir, filesystem=fs)
            return ray.data.read_parquet(files, filesystem=fs, partitioning=hive)
        return ray.data.read_parquet(files, filesystem=fs) if files else ray.data.from_items([])
    return _read_tables(fs, files, partitions)


def _read_tables(fs: Any, files: list[str], partitions: list[dict[str, str]]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not files:
        return pa.table({})
    tables = []
    for path, partition in zip(files, partitions, strict=True):
        table = pq.read_table(path, filesystem=fs)
        for column, value in partition.items():  # hive/Delta files leave them out
            if column not in table.column_names:
                table = table.append_column(column, pa.array([value] * table.num_rows, pa.string()))
        tables.append(_without_views(table))
    return pa.concat_tables(tables, promote_options="default")


def _without_views(table: Any) -> Any:
    """String/binary view columns as plain ones: runs of an input.since output may read
    files that deltalake wrote with view types, and concat cannot merge the two."""
    import pyarrow as pa

    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_string_view(t):
            return pa.string()
        return pa.binary() if pa.types.is_binary_view(t) else t

    schema = pa.schema([f.with_type(plain(f.type)) for f in table.schema], table.schema.metadata)
    return table if schema == table.schema else table.cast(schema)
