"""What `batchmt submit` uploads as the job's working_dir, chosen here and shown first.

The working folder is copied (hard links where possible) into a staging folder that holds
exactly the files listed, so what the user is shown is what the cluster receives:

- `.gitignore` files (the root's and nested ones) are honoured, as git does;
- a built-in list keeps secrets out even when no `.gitignore` names them (`.env`,
  `.aws/`, `.ssh/`, `.netrc`, private keys, cloud service-account JSON, kubeconfig, names
  with `secret`, `token` or `credential` in them, ...), and environments and caches stay
  home;
- a symbolic link (to a file or a folder) is never followed: its target may be anything
  anywhere (a private key), so it is left out and named;
- the job config is always included (unless it looks like a secret: then submit refuses).

What is uploaded is printed grouped by folder, with the total, after what was left out.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchmt.pipeline.errors import UserError

# Never uploaded: they hold credentials. Matched with gitignore rules at any depth.
SECRET_PATTERNS = (
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    ".aws/",
    ".ssh/",
    ".gnupg/",
    ".kube/",
    ".docker/",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".pypirc",
    ".npmrc",
    ".boto",
    ".s3cfg",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "credentials",
    "credentials.json",
    "*.tfstate",
    "*.tfstate.*",
    "*.tfvars",
    "*.ppk",
    ".htpasswd",
    # Cloud service-account keys (GCP's JSON keys, by how people name them) and cluster
    # access (issue #23: gcp-sa.json and kubeconfig were uploaded).
    "*credential*",
    "*service-account*.json",
    "*service_account*.json",
    "*-sa.json",
    "*_sa.json",
    "sa.json",
    "*sa-key*.json",
    "kubeconfig",
    "kubeconfig.*",
    "*.kubeconfig",
    "*secret*",
    "*password*",
)
# Names with "token" in them are secrets (api_token.txt, .token, github-token), except a
# model's tokenizer files, which a job needs (tokenizer.json, special_tokens_map.json).
TOKEN_PATTERNS = ("*token*",)
# Source files whose names mention tokens (benchmarks/first_token.py) are code, not tokens.
CODE_SUFFIXES = (".py", ".pyi", ".ipynb", ".md", ".rs", ".go", ".java", ".ts", ".js")
TOKENIZER_FILES = ("*tokenizer*", "special_tokens_map.json", "added_tokens.json")
# Never uploaded either: large, machine-specific, or regenerated on the cluster.
BUILTIN_EXCLUDES = (
    ".git/",
    ".venv/",
    "venv/",
    "__pycache__/",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    "*.pyc",
    "out/",
)

# Files Ray's packaging reads as exclude rules for a working_dir.
RAY_IGNORE_FILES = frozenset({".gitignore", ".rayignore"})


class UploadError(UserError, ValueError):
    """The working folder cannot be uploaded as asked; the message names the fix."""


def _spec(lines: Iterable[str]) -> Any:
    """A gitignore matcher: pathspec's when installed, else the copy Ray ships with."""
    try:
        import pathspec

        return pathspec.GitIgnoreSpec.from_lines(list(lines))
    except ImportError:
        import importlib

        vendored = importlib.import_module("ray._private.thirdparty.pathspec")
        return vendored.PathSpec.from_lines("gitwildmatch", list(lines))


@dataclass
class Selection:
    root: Path
    files: list[str] = field(default_factory=list)  # relative, '/'-separated, sorted
    size: int = 0
    secrets: list[str] = field(default_factory=list)  # left out as secrets (names only)
    ignored: int = 0  # left out by .gitignore or the built-in list
    links: list[str] = field(default_factory=list)  # symbolic links, never followed
    sizes: dict[str, int] = field(default_factory=dict)  # bytes of each selected file

    def describe(self, shown: int = 5, folders: int = 20) -> str:
        """What is left out (secrets and links first: they are what a user must see), then
        what is uploaded, one line per folder, and the total."""
        lines = []
        if self.secrets:
            secret_names = ", ".join(self.secrets[:shown])
            more = ", ..." if len(self.secrets) > shown else ""
            lines.append(
                f"left out as secrets (never uploaded): {len(self.secrets)} ({secret_names}{more})"
            )
        if self.links:
            link_names = ", ".join(self.links[:shown])
            more = ", ..." if len(self.links) > shown else ""
            lines.append(
                f"left out as symbolic links (targets never uploaded): {len(self.links)} "
                f"({link_names}{more}); copy a file in if the job needs it"
            )
        lines.append(f"left out: {self.ignored} path(s) by .gitignore and the built-in list")
        lines.append(f"uploading from {self.root}:")
        for folder, count, size in self._by_folder(folders):
            lines.append(f"  {folder:<40} {count:>6} file(s) {_size(size):>10}")
        lines.append(f"  {'total':<40} {len(self.files):>6} file(s) {_size(self.size):>10}")
        return "\n".join(lines)

    def _by_folder(self, limit: int) -> list[tuple[str, int, int]]:
        """(folder, files, bytes) of the selection; past `limit` folders, by top folder."""
        for depth in (None, 1):
            groups: dict[str, list[int]] = {}
            for name in self.files:
                parts = name.split("/")[:-1]
                folder = "/".join(parts if depth is None else parts[:depth])
                entry = groups.setdefault(f"{folder}/" if folder else "./", [0, 0])
                entry[0] += 1
                entry[1] += self.sizes.get(name, 0)
            if len(groups) <= limit or depth == 1:
                return [(f, n, b) for f, (n, b) in sorted(groups.items())]
        return []


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def select(root: Path, always: Iterable[Path] = ()) -> Selection:
    """The files under `root` to upload (see the module docstring)."""
    root = root.resolve()
    secrets = _Secrets()
    builtin = _spec(BUILTIN_EXCLUDES)
    selection = Selection(root)
    forced = {p.resolve().relative_to(root).as_posix() for p in always}
    for name in sorted(forced):
        if secrets.match_file(name):
            raise UploadError(
                f"{name} looks like a secret (built-in exclude list) and is never uploaded; "
                "rename the config"
            )
    # (folder relative to root, its gitignore matcher) for every .gitignore seen so far.
    ignores: list[tuple[str, Any]] = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        rel = "" if rel == "." else rel
        ignores = [(base, spec) for base, spec in ignores if _under(rel, base)]
        gitignore = Path(folder) / ".gitignore"
        if gitignore.is_file():
            ignores.append((rel, _spec(gitignore.read_text(encoding="utf-8").splitlines())))
        kept_dirs = []
        for d in sorted(dirs):
            path = f"{rel}/{d}" if rel else d
            if os.path.islink(os.path.join(folder, d)):
                selection.links.append(path + "/")  # it may point anywhere: not followed
            elif secrets.match_file(path + "/"):
                selection.secrets.append(path + "/")
            elif builtin.match_file(path + "/") or _ignored(path + "/", ignores):
                selection.ignored += 1
            else:
                kept_dirs.append(d)
        dirs[:] = kept_dirs
        for f in sorted(files):
            path = f"{rel}/{f}" if rel else f
            if os.path.islink(os.path.join(folder, f)):
                # Its target may be a private key anywhere: the link is not uploaded, and
                # neither is what it points at (a forced config here is refused below).
                selection.links.append(path)
            elif secrets.match_file(path):
                selection.secrets.append(path)
            elif path not in forced and (
                builtin.match_file(path) or _ignored(path, ignores) or f in RAY_IGNORE_FILES
            ):
                # Ignore files stay home too: the selection has applied them, and Ray's
                # packaging would apply them again to the staged folder and drop what the
                # selection forced in (a config inside a gitignored `out/` folder).
                selection.ignored += 1
            else:
                selection.files.append(path)
                selection.sizes[path] = (Path(folder) / f).stat().st_size
                selection.size += selection.sizes[path]
    for name in sorted(forced - set(selection.files)):
        if (root / name).is_symlink() or name in selection.links:
            raise UploadError(
                f"{name} is a symbolic link, and submit never uploads what a link points "
                "at; copy the config into the working folder"
            )
        selection.files.append(name)  # a config inside an ignored folder
        selection.sizes[name] = (root / name).stat().st_size
        selection.size += selection.sizes[name]
    selection.files.sort()
    return selection


class _Secrets:
    """The built-in secret names: SECRET_PATTERNS, and TOKEN_PATTERNS but for tokenizers."""

    def __init__(self) -> None:
        self.always = _spec(SECRET_PATTERNS)
        self.token = _spec(TOKEN_PATTERNS)
        self.tokenizer = _spec(TOKENIZER_FILES)

    def match_file(self, path: str) -> bool:
        if self.always.match_file(path):
            return True
        if path.endswith(CODE_SUFFIXES):  # first_token.py is code about tokens, not one
            return False
        return bool(self.token.match_file(path)) and not self.tokenizer.match_file(path)


def _under(rel: str, base: str) -> bool:
    return base == "" or rel == base or rel.startswith(base + "/")


def _ignored(path: str, ignores: list[tuple[str, Any]]) -> bool:
    """As git decides: the nearest .gitignore that says anything about the path wins."""
    verdict = False
    for base, spec in ignores:
        local = path[len(base) + 1 :] if base else path
        if hasattr(spec, "check_file"):  # pathspec >= 0.12: negations give a verdict
            result = spec.check_file(local)
            if result.include is not None:
                verdict = bool(result.include)
        elif spec.match_file(local):
            verdict = True
    return verdict


def stage(selection: Selection, target: Path) -> None:
    """Copy the selected files under `target` (hard links when on the same disk)."""
    for name in selection.files:
        source, dest = selection.root / name, target / name
        if source.is_symlink():  # replaced by a link since it was selected
            raise UploadError(f"{name} became a symbolic link while staging; submit again")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, dest, follow_symlinks=False)
        except OSError:
            shutil.copy2(source, dest, follow_symlinks=False)
