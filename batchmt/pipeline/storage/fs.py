"""Storage access: fsspec filesystems, atomic publishing, bounded retries.

Every byte the job reads or writes goes through an fsspec filesystem opened here, so local
paths, `file://` and `s3://` (MinIO, R2, moto) behave the same. Two guarantees matter to the
commit protocol: an object is visible whole or not at all (`publish`), and a transient
storage failure is retried a few times before it becomes a shard failure (`with_retries`).

Storage options can carry credentials: they are never logged or put into error messages.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from batchmt.pipeline.errors import UserError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Attempts per storage call and the first backoff; the delay doubles (0.2, 0.4, 0.8 s), so a
# flaky endpoint costs ~1.4 s before the error reaches the caller (and the shard retry).
RETRY_ATTEMPTS = 4
RETRY_BASE_DELAY = 0.2

# errno values that mean "the service or network hiccuped", as s3fs maps S3 5xx/SlowDown
# (EREMOTEIO/EBUSY/EIO) and as sockets report dropped connections.
_TRANSIENT_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.EBUSY,
        errno.EAGAIN,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ECONNREFUSED,
        errno.EPIPE,
        getattr(errno, "EREMOTEIO", 121),
    }
)
# Errors that say "this will never work": retrying only delays the real message.
_PERMANENT = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
# botocore / aiohttp network errors do not all derive from the builtin ones; matched by name
# so this module does not import them (they exist only where s3fs is installed).
_TRANSIENT_NAMES = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ClientConnectionError",
        "ClientConnectorError",
        "ClientPayloadError",
        "ServerDisconnectedError",
        "IncompleteReadError",
        "ResponseStreamingError",
    }
)


class StorageError(UserError, OSError):
    """A storage location that cannot be used; the message says what to install or fix."""


def is_transient(exc: BaseException) -> bool:
    """True for failures that may succeed when tried again (network, S3 5xx, throttling)."""
    if isinstance(exc, _PERMANENT):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


def with_retries(
    what: str,
    fn: Callable[[], T],
    attempts: int = RETRY_ATTEMPTS,
    base_delay: float = RETRY_BASE_DELAY,
) -> T:
    """Call `fn`, retrying transient storage failures with exponential backoff.

    `what` names the operation for the log (a path, never credentials). The last error is
    raised unchanged so callers see the real cause.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            delay = base_delay * 2 ** (attempt - 1)
            log.warning(
                "storage: %s failed (%s: %s); retry %d/%d in %.1fs",
                what,
                type(exc).__name__,
                exc,
                attempt,
                attempts - 1,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises


def _fsspec_options(protocol: str, storage_options: Mapping[str, Any]) -> dict[str, Any]:
    """Translate our documented options into what the fsspec backend expects.

    Users write `endpoint_url` at top level (as for MinIO/R2/moto); s3fs wants it inside
    `client_kwargs`, where botocore reads it.
    """
    options = dict(storage_options)
    if protocol in ("s3", "s3a") and "endpoint_url" in options:
        client_kwargs = dict(options.get("client_kwargs") or {})
        client_kwargs.setdefault("endpoint_url", options.pop("endpoint_url"))
        options["client_kwargs"] = client_kwargs
    return options


def open_fs(
    url: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Open the filesystem behind `url`; return it and the path inside it (no protocol).

    Plain paths and `file://` give the local filesystem with an absolute path; `s3://b/k`
    gives s3fs and `b/k`. Glob characters are kept in the returned path.
    """
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    options = _fsspec_options(protocol, storage_options or {})
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        hint = "pip install s3fs" if protocol in ("s3", "s3a") else f"the fsspec {protocol} backend"
        raise StorageError(f"cannot open {url!r}: {protocol}:// needs {hint} ({exc})") from None
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise StorageError(
                f"cannot open {url!r}: unknown storage protocol {protocol!r}"
            ) from None
        raise
    return fs, str(path)


def join(root: str, *parts: str) -> str:
    """Join path segments with '/', the separator every fsspec backend uses."""
    out = root.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            out = f"{out}/{part}" if out else part
    return out


@contextlib.contextmanager
def publish(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[IO[bytes]]:
    """Write `path` so that readers see the whole object or nothing.

    Locally: a temp file in the target folder, then `os.replace` (atomic on POSIX).
    Object stores: a local temp file uploaded on success with one retried `put_file`
    (a single PUT or a completed multipart upload, atomic on S3). An exception inside the
    block leaves no object and no partial upload; a repeated publish overwrites.
    """
    if isinstance(fs, LocalFileSystem):
        with _publish_local(path) as f:
            yield f
        return
    with tempfile.NamedTemporaryFile(prefix="batchmt-", suffix=".part") as tmp:
        yield tmp
        tmp.flush()
        with_retries(f"upload {path}", lambda: fs.put_file(tmp.name, path))


@contextlib.contextmanager
def _publish_local(path: str) -> Iterator[IO[bytes]]:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    # Same folder as the target so os.replace never crosses filesystems; the dot prefix keeps
    # readers (and our corpus listing) from ever picking the temp file up.
    fd, tmp_path = local_temp(folder, f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise


def local_temp(folder: str, prefix: str) -> tuple[int, str]:
    """A temp file in `folder` (a dot name, never listed) whose mode is what the umask gives.

    `mkstemp` makes it 0600 whatever the umask; published under that mode, another user, a
    Spark or Trino service account or a web server on a shared filesystem could not read it.
    """
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    os.fchmod(fd, 0o666 & ~current_umask())
    return fd, path


def current_umask() -> int:
    """The process umask, read without changing it where Linux says it (/proc), since
    `os.umask` can only be read by setting it, which races other threads creating files."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_input(fs: fsspec.AbstractFileSystem, path: str) -> IO[bytes]:
    """Open a Parquet file for random access without fsspec's read-ahead cache.

    s3fs would otherwise fetch a whole block (50 MB by default) on the first read: reading a
    footer, or two row groups of a large file, would download far more than needed. Parquet
    readers already ask for exact byte ranges (and coalesce them with pre_buffer).
    """
    return fs.open(path, "rb", cache_type="none")


def write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Publish a small object in one piece (the upload inside `publish` is retried)."""
    with publish(fs, path) as f:
        f.write(data)


def json_bytes(obj: Any) -> bytes:
    """`obj` as stable JSON (sorted keys) so reruns produce identical bytes."""
    return json.dumps(obj, sort_keys=True, indent=1).encode("utf-8")


def write_json(fs: fsspec.AbstractFileSystem, path: str, obj: Any) -> None:
    """Publish `obj` as stable JSON."""
    write_bytes(fs, path, json_bytes(obj))


def create_exclusive(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Create `path` with `data` whole, or raise FileExistsError if it exists: storage's
    compare-and-set, what fences a writer that may have lost its claim (leases, markers).

    Locally a hard link of a finished temp file (atomic, fails with EEXIST); on S3 a PUT
    with `If-None-Match: *` (s3fs `mode="create"`; AWS S3, moto and MinIO honour it).
    """
    if isinstance(fs, LocalFileSystem):
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        fd, tmp = local_temp(folder, f".{os.path.basename(path)}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return
    with_retries(f"create {path}", lambda: fs.pipe_file(path, data, mode="create"))


def read_bytes(fs: fsspec.AbstractFileSystem, path: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    try:
        data = with_retries(f"read {path}", lambda: fs.cat_file(path))
    except FileNotFoundError:
        return None
    return bytes(data)


def read_json(fs: fsspec.AbstractFileSystem, path: str) -> Any:
    """Parsed JSON at `path`, or None when it does not exist.

    Corrupt JSON raises ValueError naming the path: with `publish` it can only come from
    someone else writing into our output, which a person has to look at.
    """
    data = read_bytes(fs, path)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); remove or restore it") from None


def list_names(fs: fsspec.AbstractFileSystem, folder: str) -> list[str]:
    """Sorted base names in `folder` from one fresh listing; [] when it does not exist.

    The listing cache is dropped first: other processes (workers, a previous run) write
    here, and a stale cache would hide their files.
    """
    fs.invalidate_cache(folder)
    try:
        entries = with_retries(f"list {folder}", lambda: fs.ls(folder, detail=False))
    except FileNotFoundError:
        return []
    names = (str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)
    return sorted(n for n in names if n and not n.startswith("."))


def remove(fs: fsspec.AbstractFileSystem, path: str, recursive: bool = False) -> None:
    """Delete `path` (a folder too with recursive=True); a missing path is fine."""
    fs.invalidate_cache(path)
    try:
        if not fs.exists(path):
            return
        with_retries(f"remove {path}", lambda: fs.rm(path, recursive=recursive))
    except FileNotFoundError:
        return
