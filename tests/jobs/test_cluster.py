"""A job on a real two-node Ray cluster on this machine (`ray.cluster_utils.Cluster`, as Ray's
own tests build one): replicas on both nodes, a node removed mid-job with its shard rerun on
the other (no row lost or doubled), and node-local paths refused on a multi-node cluster."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import S3_BUCKET, StorageRoot
from tests.jobs.corpora import corpus_table, local_job_config
from tests.jobs.drivers import descendants, kill_all, output, start_driver, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(s3_endpoint: str) -> Iterator[Any]:
    """A head node with 2 CPUs; tests add (and remove) a 1-CPU worker node.

    Started after the S3 server, so its workers inherit the test credentials.
    """
    from ray.cluster_utils import Cluster

    head = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    yield head
    head.shutdown()


def _raylet_pid(node: Any) -> int:
    from ray._private import ray_constants

    return int(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)


def _s3_job(tmp_path: Path, model: Path, endpoint: str, rows: int) -> tuple[Path, StorageRoot]:
    root = StorageRoot("s3", f"s3://{S3_BUCKET}/{uuid.uuid4().hex}", {"endpoint_url": endpoint})
    root.write_parquet("in/corpus.parquet", corpus_table(rows, docs=rows // 30), row_group_size=60)
    options = {"storage_options": root.storage_options}
    config = local_job_config(
        tmp_path,
        model,
        input={"path": root.url_of("in"), **options},
        output={"path": root.url_of("out"), **options},
        model={"max_input_tokens": 40},
        decoding={"num_beams": 4, "max_new_tokens": 24},
        workers={"num_workers": 2, "num_cpus": 1},
        sharding={"rows_per_shard": 60},
    )
    return config, root


def _markers(root: StorageRoot) -> dict[str, dict[str, Any]]:
    from batchmt.pipeline.storage.fs import list_names, open_fs

    fs, path = open_fs(root.url_of("out", "_completions"), root.storage_options)
    return {n: json.loads(fs.cat_file(f"{path}/{n}")) for n in list_names(fs, path)}


def _output_ids(root: StorageRoot) -> list[str]:
    from batchmt.pipeline.storage.fs import open_fs

    fs, path = open_fs(root.url_of("out", "data"), root.storage_options)
    files = [p for p in fs.ls(path, detail=False) if str(p).endswith(".parquet")]
    table = ds.dataset(files, filesystem=fs, format="parquet").to_table(columns=["id"])
    return sorted(table.column("id").to_pylist())


def test_node_removed_mid_job_its_shard_reruns_on_the_other_node(
    cluster: Any, tiny_marian: Path, s3_endpoint: str, tmp_path: Path
) -> None:
    rows = 1200
    config, root = _s3_job(tmp_path, tiny_marian, s3_endpoint, rows)
    worker = cluster.add_node(num_cpus=1)
    worker_raylet = _raylet_pid(worker)
    driver = start_driver(config, env={"RAY_ADDRESS": cluster.address})
    worker_pids: set[int] = set()

    def worker_node_committed() -> bool:
        worker_pids.update(descendants(worker_raylet))
        return any(m["pid"] in worker_pids for m in _markers(root).values())

    try:
        wait_for("a shard committed by the worker node", worker_node_committed, driver)
        cluster.remove_node(worker, allow_graceful=False)
        log = output(driver)
    finally:
        kill_all(driver, {})
    assert driver.returncode == 0, log
    assert "worker_died" in log  # the removed node's replica died with a shard in hand
    markers = _markers(root)
    by_worker_node = [sid for sid, m in markers.items() if m["pid"] in worker_pids]
    assert by_worker_node and len(by_worker_node) < len(markers)  # both nodes worked
    assert _output_ids(root) == [f"r{i:05d}" for i in range(rows)]  # 0 lost, 0 doubled
    assert sum(m["num_rows"] for m in markers.values()) == rows


def test_node_local_paths_are_refused_on_a_multi_node_cluster(
    cluster: Any, tiny_marian: Path, tmp_path: Path
) -> None:
    config = local_job_config(tmp_path, tiny_marian)
    pq.write_table(corpus_table(20, awkward=False), tmp_path / "in.parquet")
    worker = cluster.add_node(num_cpus=1)
    driver = start_driver(config, env={"RAY_ADDRESS": cluster.address})
    try:
        log = output(driver)
    finally:
        kill_all(driver, {})
        cluster.remove_node(worker)
    assert driver.returncode == 2, log
    assert "node-local path" in log and "2 nodes" in log
    assert not (tmp_path / "out" / "data").exists()
    data = yaml.safe_load(config.read_text())
    assert data["input"]["path"] in log


@pytest.mark.parametrize(
    ("warehouse", "refused"), [("/data/warehouse", True), ("s3://lake/warehouse", False)]
)
def test_a_catalog_tables_warehouse_is_checked_like_an_input_path(
    warehouse: str, refused: bool
) -> None:
    """An Iceberg catalog table has no input.path: its files live under the warehouse."""
    from batchmt.jobs.ray.cluster import check_paths_reachable
    from batchmt.pipeline.spec import spec_from_dict
    from batchmt.pipeline.storage.fs import StorageError

    spec = spec_from_dict(
        {
            "source_lang": "en",
            "target_lang": "de",
            "input": {
                "table": "docs.pages",
                "catalog": {"properties": {"type": "sql", "warehouse": warehouse}},
            },
            "output": {"path": "s3://lake/out"},
            "model": {"name_or_path": "m"},
        }
    )
    nodes = [{"Alive": True}, {"Alive": True}]
    if refused:
        with pytest.raises(StorageError, match=r"warehouse.*node-local"):
            check_paths_reachable(spec, nodes)
    else:
        check_paths_reachable(spec, nodes)
