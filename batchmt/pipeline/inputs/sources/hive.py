"""Plain Parquet inputs (a file, a folder with hive partitions, a glob), as they were always
read: every data file the listing finds, partition values from `key=value` folder names."""

from __future__ import annotations

import re
from typing import Any

from batchmt.pipeline.inputs.corpus import hive_partitions
from batchmt.pipeline.inputs.sources.listing import InputFile, Listing
from batchmt.pipeline.spec import InputSpec
from batchmt.pipeline.storage.fs import open_fs, with_retries

_GLOB = re.compile(r"[*?\[]")  # as corpus.list_files tells a glob from a path


def list_parquet(input_spec: InputSpec) -> Listing:
    files, columns = hive_partitions(input_spec)
    source = {"format": "parquet", "version": None}
    return Listing([InputFile(path, partition) for path, partition in files], columns, source)


def file_details(input_spec: InputSpec, paths: list[str]) -> dict[str, dict[str, Any]]:
    """What storage says about each listed file (size, mtime / ETag ...), from one detailed
    listing of input.path rather than a request per file (S3: thousands of HEADs)."""
    fs, path = open_fs(input_spec.path, input_spec.storage_options)
    url = input_spec.path
    found: dict[str, Any]
    if _GLOB.search(path):
        found = with_retries(f"glob {url}", lambda: fs.glob(path, detail=True))
    else:
        info = with_retries(f"stat {url}", lambda: fs.info(path))
        if info.get("type") == "directory":
            fs.invalidate_cache(path)
            found = with_retries(f"list {url}", lambda: fs.find(path, detail=True))
        else:
            found = {str(info.get("name", path)): info}

    def stat(name: str) -> dict[str, Any]:
        info = found.get(name)
        if info is None:  # named differently by this listing: ask for it alone
            info = with_retries(f"stat {name}", lambda: fs.info(name))
        return dict(info)

    return {name: stat(name) for name in paths}
