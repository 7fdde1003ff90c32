"""Plain Parquet inputs (a file, a folder with hive partitions, a glob), as they were always
read: every data file the listing finds, partition values from `key=value` folder names."""

from __future__ import annotations

from batchmt.pipeline.corpus import hive_partitions
from batchmt.pipeline.sources.listing import InputFile, Listing
from batchmt.pipeline.spec import InputSpec


def list_parquet(input_spec: InputSpec) -> Listing:
    files, columns = hive_partitions(input_spec)
    source = {"format": "parquet", "version": None}
    return Listing([InputFile(path, partition) for path, partition in files], columns, source)
