"""Checks of where a job writes, made before the output is claimed.

An output that is a file, sits under a file, or cannot be written would otherwise surface
as a traceback from the first write; an output inside the input folder would make every
rerun read the job's own data files as input. Both fail here with one line.
"""

from __future__ import annotations

import os
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

from batchmt.pipeline.inputs.corpus import input_base
from batchmt.pipeline.spec import CacheSpec, InputSpec, OutputSpec
from batchmt.pipeline.storage.fs import (
    StorageError,
    join,
    open_fs,
    remove,
    with_retries,
    write_bytes,
)


class OutputLocationError(StorageError):
    """The output cannot be used where it is; the message names the fix."""


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def _inside(child: str, parent: str) -> bool:
    parent = parent.rstrip("/")
    return child == parent or child.startswith(parent + "/")


def check_output_outside_input(input_spec: InputSpec, output_spec: OutputSpec) -> None:
    """Refuse an output folder that is the input folder or inside it (or its glob's)."""
    if not input_spec.path.strip():
        return  # an Iceberg table named through its catalog: no input folder to be inside
    in_fs, in_path = open_fs(input_spec.path, input_spec.storage_options)
    out_fs, out_root = open_fs(output_spec.path, output_spec.storage_options)
    if in_fs.protocol != out_fs.protocol:
        return
    base = input_base(in_path)
    if _is_local(in_fs):  # symlinks and ../ must not hide the overlap
        base, out_root = os.path.realpath(base), os.path.realpath(out_root)
    if base and _inside(out_root, base):
        raise OutputLocationError(
            f"output.path {output_spec.path} is inside input.path {input_spec.path}: every "
            "run would read the job's own output files as input; choose an output.path "
            "outside the input folder"
        )


def _local_real(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return os.path.realpath(path) if _is_local(fs) else path.rstrip("/")


def check_cache_outside_data(
    cache: CacheSpec, input_spec: InputSpec, output_spec: OutputSpec
) -> None:
    """Refuse a translation memory inside the input (its files would be read as input rows
    by every later run) or inside the output (its rows would sit among the shard files, and
    output.overwrite would delete it), or an output inside the memory."""
    if cache.path is None or cache.mode == "off":
        return
    mem_fs, mem = open_fs(cache.path, cache.storage_options)
    mem = _local_real(mem_fs, mem)
    out_fs, out_root = open_fs(output_spec.path, output_spec.storage_options)
    if out_fs.protocol == mem_fs.protocol:
        out_root = _local_real(out_fs, out_root)
        if _inside(mem, out_root) or _inside(out_root, mem):
            raise OutputLocationError(
                f"cache.path {cache.path} and output.path {output_spec.path} overlap: the "
                "memory's files would mix with the output's (and output.overwrite would "
                "delete them); put the memory in a folder of its own"
            )
    if not input_spec.path.strip():
        return
    in_fs, in_path = open_fs(input_spec.path, input_spec.storage_options)
    base = input_base(in_path)
    if in_fs.protocol == mem_fs.protocol and base and _inside(mem, _local_real(in_fs, base)):
        raise OutputLocationError(
            f"cache.path {cache.path} is inside input.path {input_spec.path}: every later "
            "run would read the memory's files as input; put the memory outside the input"
        )


def check_output_writable(output_spec: OutputSpec) -> None:
    """The output is a folder (or a prefix) this process can write: checked locally by
    the nearest existing folder, on object stores by writing and removing a probe."""
    fs, root = open_fs(output_spec.path, output_spec.storage_options)
    if _is_local(fs):
        _check_local(root, output_spec.path)
        return
    probe = join(root, f"_batchmt_probe_{uuid.uuid4().hex}")
    try:
        with_retries(f"write {probe}", lambda: write_bytes(fs, probe, b""))
        remove(fs, probe)
    except OSError as exc:
        raise OutputLocationError(
            f"cannot write to output.path {output_spec.path} ({type(exc).__name__}: {exc}); "
            "check the bucket, the credentials and output.storage_options"
        ) from None


def _check_local(root: str, url: str) -> None:
    path = os.path.abspath(root)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputLocationError(
            f"output.path {url} is a file; it must be a folder: choose another output.path"
        )
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputLocationError(
            f"output.path {url} cannot be created: {existing} is a file, not a folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputLocationError(
            f"output.path {url} is not writable ({existing} does not allow this user to "
            "write); choose another output.path or fix the permissions"
        )
