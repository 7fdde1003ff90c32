from __future__ import annotations

import errno
import os

import pytest

from batchmt.pipeline.storage.fs import (
    StorageError,
    is_transient,
    join,
    list_names,
    open_fs,
    publish,
    read_json,
    with_retries,
    write_json,
)
from tests.conftest import StorageRoot


def test_open_fs_local_forms(tmp_path):
    for url in (str(tmp_path), f"file://{tmp_path}"):
        fs, path = open_fs(url)
        assert fs.protocol[0] in ("file", "local")
        assert path == str(tmp_path)


def test_open_fs_unknown_protocol():
    with pytest.raises(StorageError, match="unknown storage protocol 'nope'"):
        open_fs("nope://bucket/key")


def test_join():
    assert join("b/root/", "data", "/part-1.parquet") == "b/root/data/part-1.parquet"
    assert join("", "x") == "x"


def test_publish_is_whole_or_nothing(storage_root: StorageRoot):
    fs, root = open_fs(storage_root.url, storage_root.storage_options)
    target = join(root, "out", "obj.bin")
    with pytest.raises(RuntimeError, match="boom"), publish(fs, target) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    fs.invalidate_cache()
    assert not fs.exists(target)
    assert list_names(fs, join(root, "out")) == []  # no temp file left behind either

    with publish(fs, target) as f:
        f.write(b"first")
    with publish(fs, target) as f:  # a retried attempt overwrites
        f.write(b"second")
    assert fs.cat_file(target) == b"second"


def test_json_roundtrip_and_missing(storage_root: StorageRoot):
    fs, root = open_fs(storage_root.url, storage_root.storage_options)
    assert read_json(fs, join(root, "nothing.json")) is None
    write_json(fs, join(root, "a", "x.json"), {"b": 1, "a": [1, 2]})
    assert read_json(fs, join(root, "a", "x.json")) == {"a": [1, 2], "b": 1}
    assert list_names(fs, join(root, "a")) == ["x.json"]
    assert list_names(fs, join(root, "missing")) == []


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (OSError(errno.EBUSY, "SlowDown"), True),
        (OSError(121, "InternalError"), True),
        (FileNotFoundError("x"), False),
        (PermissionError(errno.EACCES, "denied"), False),
        (ValueError("bad"), False),
    ],
)
def test_is_transient(exc: BaseException, transient: bool):
    assert is_transient(exc) is transient


def test_with_retries_retries_transient_then_succeeds():
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset")
        return "done"

    assert with_retries("op", flaky, base_delay=0) == "done"
    assert len(calls) == 3


def test_with_retries_never_retries_missing_files():
    calls = []

    def missing() -> None:
        calls.append(1)
        raise FileNotFoundError("gone")

    with pytest.raises(FileNotFoundError):
        with_retries("op", missing, base_delay=0)
    assert len(calls) == 1


def test_with_retries_gives_up_after_bounded_attempts():
    calls = []

    def down() -> None:
        calls.append(1)
        raise OSError(errno.EBUSY, "SlowDown")

    with pytest.raises(OSError, match="SlowDown"):
        with_retries("op", down, attempts=4, base_delay=0)
    assert len(calls) == 4


def test_publish_local_leaves_no_temp_on_error(tmp_path):
    fs, root = open_fs(str(tmp_path))
    with pytest.raises(KeyError), publish(fs, join(root, "f.json")) as f:
        f.write(b"{")
        raise KeyError("x")
    assert os.listdir(tmp_path) == []
