"""Shared fixtures: a real S3 endpoint (moto's server) and a `storage_root` that runs the same
test body against a local folder and an S3 prefix."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchmt.pipeline.storage.fs import join, open_fs

S3_BUCKET = "batchmt-test"
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server (started once per session) with the test bucket created."""
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    saved = {key: os.environ.get(key) for key in _AWS_ENV}
    os.environ.update(_AWS_ENV)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        fs, _ = open_fs(f"s3://{S3_BUCKET}", {"endpoint_url": url})
        fs.mkdir(S3_BUCKET)
        yield url
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class StorageRoot:
    """A fresh, empty location on one backend."""

    kind: str  # "local" or "s3"
    url: str  # what a user would put in input.path / output.path
    storage_options: dict[str, Any] = field(default_factory=dict)

    def url_of(self, *parts: str) -> str:
        return join(self.url, *parts)

    def write_parquet(
        self, relpath: str, table: pa.Table, row_group_size: int | None = None
    ) -> str:
        """Write `table` under this root; return its URL."""
        fs, path = open_fs(self.url_of(relpath), self.storage_options)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as f:
            pq.write_table(table, f, row_group_size=row_group_size)
        return self.url_of(relpath)

    def write_bytes(self, relpath: str, data: bytes) -> None:
        fs, path = open_fs(self.url_of(relpath), self.storage_options)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, data)


@pytest.fixture(params=["local", "s3"])
def storage_root(request: pytest.FixtureRequest, tmp_path: Path) -> StorageRoot:
    if request.param == "local":
        return StorageRoot("local", str(tmp_path / "root"))
    endpoint = request.getfixturevalue("s3_endpoint")
    return StorageRoot("s3", f"s3://{S3_BUCKET}/{uuid.uuid4().hex}", {"endpoint_url": endpoint})
