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

    The output is opened as `batchmt status` opens it (pipeline/outputs/runs.py): a Parquet
    job or its `input.since` runs give the shards with a completion marker that counts (a
    shard being rewritten by a running job is never half-visible); a Delta or Iceberg
    output gives the rows its table holds now.
    """
    from batchmt.pipeline.outputs.runs import open_output
    from batchmt.pipeline.storage.fs import open_fs

    fs, root = open_fs(str(path), dict(storage_options or {}))
    if not fs.isdir(root):
        from batchmt.pipeline.storage.paths import where

        raise FileNotFoundError(
            f"no job output at {path}{where(str(path))}; pass a job's output.path"
        )
    view = open_output(str(path), dict(storage_options or {}))
    published = view.published_files()
    files = [f.path for f in published]
    fs = view.fs
    if as_ray_dataset:
        try:
            import ray.data
        except ImportError as exc:
            raise ImportError(
                f"read_output(as_ray_dataset=True) needs Ray Data ({exc}); install it with "
                "pip install 'batchmt[data]'"
            ) from exc
        # The partition columns are folder names (Iceberg files keep them as columns too).
        if view.kind != "iceberg" and any(f.partition for f in published):
            from ray.data.datasource import Partitioning, PartitionStyle

            hive = Partitioning(PartitionStyle.HIVE, base_dir=view.data_dir, filesystem=fs)
            return ray.data.read_parquet(files, filesystem=fs, partitioning=hive)
        return ray.data.read_parquet(files, filesystem=fs) if files else ray.data.from_items([])
    return _read_tables(fs, files, [f.partition for f in published])


def _read_tables(fs: Any, files: list[str], partitions: list[dict[str, str]]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from batchmt.pipeline.outputs.partitions import partition_value

    if not files:
        return pa.table({})
    tables = []
    for path, partition in zip(files, partitions, strict=True):
        table = pq.read_table(path, filesystem=fs)
        for column, value in partition.items():  # hive/Delta files leave them out
            if column not in table.column_names:
                # A null partition's folder (__HIVE_DEFAULT_PARTITION__) reads back as null.
                values = [partition_value(value)] * table.num_rows
                table = table.append_column(column, pa.array(values, pa.string()))
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
