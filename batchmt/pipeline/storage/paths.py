"""Relative paths in a job config: one rule, said in every not-found message.

The rule: a relative local path (input.path, output.path, glossary.path, cache.path,
model.name_or_path) resolves against the working directory of the `batchmt` command, as a
shell path would; the Python API's `base_dir=` replaces the working directory for every one
of them. URLs (s3://, file://) and absolute paths are taken as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

RULE = "relative paths resolve against the working directory"


def is_relative_local(path: str) -> bool:
    return "://" not in path and not Path(path).expanduser().is_absolute()


def where(path: str, base_dir: str | None = None) -> str:
    """ " (looked for /abs/path; relative paths resolve against ...)" for a relative local
    path, so a not-found message says which file it tried; "" for anything else."""
    if not is_relative_local(path):
        return ""
    tried = Path(base_dir or os.getcwd()) / path
    rule = f"relative paths resolve against base_dir {base_dir}" if base_dir else RULE
    return f" (looked for {tried}; {rule})"


def under(path: str | None, base_dir: str) -> str | None:
    """`path` made absolute under `base_dir` when it is a relative local path."""
    if path is None or not is_relative_local(path):
        return path
    return str(Path(base_dir) / path)
