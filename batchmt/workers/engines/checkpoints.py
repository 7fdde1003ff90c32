"""Where a model's files come from: a local folder, an object store, or a model hub.

Object-store models (`s3://bucket/models/x`) are copied once per node into a local cache
keyed by URL, so every actor on a node after the first loads from disk.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import fsspec
from filelock import FileLock

_REMOTE_PREFIXES = (
    "s3://",
    "gs://",
    "gcs://",
    "abfs://",
    "az://",
    "hdfs://",
    "http://",
    "https://",
)


def cache_root() -> Path:
    return Path(os.environ.get("BATCHMT_CACHE", Path.home() / ".cache" / "batchmt"))


def resolve_model_path(
    name_or_path: str, storage_options: dict[str, Any] | None = None, base_dir: str | None = None
) -> str:
    """A path or hub id that `from_pretrained` can load.

    Relative local paths are tried against the process's working directory (where
    `ray job submit --working-dir` unpacks the project) and then against the driver's
    `base_dir`, so the same config works locally and in a submitted job.
    """
    if name_or_path.startswith(_REMOTE_PREFIXES):
        return _fetch_remote(name_or_path, storage_options or {})
    local = name_or_path.removeprefix("file://")
    for candidate in (Path(local), Path(base_dir or ".") / local):
        if candidate.is_dir():
            return str(candidate.resolve())
    looks_local = local.startswith((".", "/", "~")) or local.count("/") > 1
    if looks_local:
        raise FileNotFoundError(
            f"model folder {name_or_path!r} not found (working directory {os.getcwd()}); "
            "check model.name_or_path"
        )
    return name_or_path  # a hub id such as Helsinki-NLP/opus-mt-en-de


def _fetch_remote(url: str, storage_options: dict[str, Any]) -> str:
    key = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    target = cache_root() / "models" / key
    done = target / ".complete"
    target.parent.mkdir(parents=True, exist_ok=True)
    # One download per node even when several actors start at once.
    with FileLock(str(target) + ".lock"):
        if not done.exists():
            fs, root = fsspec.core.url_to_fs(url, **storage_options)
            files = [p for p in fs.find(root) if not p.rstrip("/").endswith("/")]
            if not files:
                raise FileNotFoundError(f"no model files under {url!r}; check model.name_or_path")
            for remote in files:
                local = target / os.path.relpath(remote, root)
                local.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(remote, str(local))
            done.touch()
    return str(target)
