"""The translation memory's storage: a Parquet dataset of finished rows, keyed by a hash.

Layout: `<cache.path>/part-<utc time>-<uuid>.parquet`, one file per shard that decoded
something new, each published whole (`storage.publish`: temp + rename, or one PUT). Nothing
is ever rewritten or appended to, so any number of replicas and jobs may add files at the
same time: a reader sees whole files or none, and never a torn one.

A key may be in several files (two replicas decoded the same segment at once). Lookups take
the row of the first file in name order (then the first row in it), so every reader picks
the same value from the same set of files. Keys are computed by the workers
(`workers/reuse/keys.py`); here they are opaque strings.

Clearing the memory is deleting the folder (or some of its files); nothing else refers to
them.

A file that cannot be read (cut short, not Parquet, bytes flipped: pages carry checksums)
is skipped, logged once per replica, and the other files keep serving; its rows are decoded
again and written to a new file. Only when no file can be read is the memory unreadable.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import structlog

from batchmt.pipeline.errors import BatchmtError
from batchmt.pipeline.quality.qe import RowQe
from batchmt.pipeline.results import RowResult, arrow_types
from batchmt.pipeline.spec import CacheSpec
from batchmt.pipeline.storage.fs import join, list_names, open_fs, publish, with_retries

log = structlog.get_logger(__name__)

_PREFIX = "part-"
_SUFFIX = ".parquet"
# Rows are sorted by key inside a file and cut into row groups of this many rows: a lookup
# then reads only the row groups whose key range can hold one of its keys.
_ROW_GROUP = 4096
# How much of the memory a replica keeps in its own RAM (Arrow bytes), whole files first
# come: about 1.5 M rows of short sentences. Beyond it, only keys are kept (about 50 bytes
# a row) and rows are read from storage when asked for.
CACHE_BYTES = 1 << 30
# Files read at once by a lookup (object stores: one request each, latency-bound).
_READ_THREADS = 8

# The stored row is the row vocabulary itself (pipeline/results.py RowResult, and its QE,
# pipeline/quality/qe.py RowQe, as qe_<field>): a field added there is remembered here. The
# column names are those memories were written with, so every file written so far reads.
_RESULT_TYPES = arrow_types(RowResult)
_QE_TYPES = {f"qe_{name}": kind for name, kind in arrow_types(RowQe).items()}
SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        *_RESULT_TYPES.items(),
        # Row-level QE as the shard loop computed it; qe_score is null when the row was
        # not checked (then the other qe_ fields are null too).
        *_QE_TYPES.items(),
        # For a person reading the memory: which job wrote the row, when.
        ("job", pa.string()),
        ("created_at", pa.timestamp("ms", tz="UTC")),
    ]
)
_VALUE_FIELDS = (*_RESULT_TYPES, *_QE_TYPES)


@dataclass(frozen=True)
class StoredRow:
    """One row's final output, exactly as the shard loop wrote it: its result and its QE."""

    result: RowResult
    qe: RowQe | None = None

    def values(self) -> dict[str, Any]:
        """The memory's columns of this row (`_VALUE_FIELDS`)."""
        out = {name: getattr(self.result, name) for name in _RESULT_TYPES}
        for column in _QE_TYPES:
            out[column] = getattr(self.qe, column[3:]) if self.qe is not None else None
        return out

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> StoredRow:
        result = RowResult(**{name: values[name] for name in _RESULT_TYPES})
        if values.get("qe_score") is None:  # the row was not checked
            return cls(result)
        qe = {column[3:]: values[column] for column in _QE_TYPES}
        return cls(result, RowQe(**{**qe, "flags": list(qe["flags"] or [])}))


class MemoryReadError(BatchmtError, OSError):
    """The memory could not be read; the message names the location (never credentials)."""


class TranslationMemory:
    """The memory at one location; `read_only` never writes."""

    def __init__(
        self,
        fs: Any,
        root: str,
        *,
        url: str,
        read_only: bool = False,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        self.read_only = read_only
        # Files already read (see _rows): whole, up to cache_bytes, then their keys only.
        self.cache_bytes = cache_bytes
        self._tables: dict[str, pa.Table] = {}
        self._keys: dict[str, pa.ChunkedArray] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        # {file: why it cannot be read}: skipped from then on, logged the first time.
        self._unreadable: dict[str, str] = {}

    @classmethod
    def open(cls, spec: CacheSpec) -> TranslationMemory | None:
        """The job's memory, or None when `cache.path` is unset or `cache.mode` is off."""
        if spec.path is None or spec.mode == "off":
            return None
        fs, root = open_fs(spec.path, spec.storage_options)
        return cls(fs, root, url=spec.path, read_only=spec.mode == "read_only")

    def files(self) -> list[str]:
        """The memory's files, in the order lookups prefer them (oldest name first)."""
        names = list_names(self.fs, self.root)
        return [join(self.root, n) for n in names if n.startswith(_PREFIX) and n.endswith(_SUFFIX)]

    def lookup(self, keys: Collection[str]) -> dict[str, StoredRow]:
        """The stored rows of those `keys` that the memory holds (first file wins)."""
        if not keys:
            return {}
        files = self.files()
        if not files:
            return {}
        wanted = pa.array(sorted(set(keys)), pa.string())
        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            # In file-name order: the first file holding a key gives its value.
            tables = list(pool.map(lambda f: self._rows_or_skip(f, wanted), files))
        with self._lock:
            unreadable = [f for f in files if f in self._unreadable]
        if len(unreadable) == len(files):
            first = self._unreadable[unreadable[0]]
            raise MemoryReadError(
                f"cannot read the translation memory at {self.url}: none of its "
                f"{len(files)} file(s) reads ({first}); fix or remove cache.path, or set "
                "cache.mode=off"
            )
        found: dict[str, StoredRow] = {}
        for table in tables:
            if table is None:
                continue
            values = {name: table.column(name).to_pylist() for name in _VALUE_FIELDS}
            for i, key in enumerate(table.column("key").to_pylist()):
                if key not in found:
                    found[key] = StoredRow.from_values({n: values[n][i] for n in _VALUE_FIELDS})
        return found

    def _rows_or_skip(self, path: str, wanted: pa.Array) -> pa.Table | None:
        """`_rows`, or None for a file that cannot be read (remembered, logged once)."""
        with self._lock:
            if path in self._unreadable:
                return None
        try:
            return self._rows(path, wanted)
        except (OSError, pa.ArrowException, ValueError) as exc:
            reason = f"{type(exc).__name__}: {str(exc)[:300]}"
            with self._lock:
                first_time = path not in self._unreadable
                self._unreadable[path] = reason
                self._tables.pop(path, None)
                self._keys.pop(path, None)
            if first_time:
                log.warning(
                    "memory_file_unreadable",
                    memory=self.url,
                    file=path.rsplit("/", 1)[-1],
                    error=reason,
                    action="skipped; the other files keep serving, its rows are decoded again",
                )
            return None

    def _rows(self, path: str, wanted: pa.Array) -> pa.Table | None:
        """The file's rows with a wanted key (None: none there).

        Files never change, so a replica reads each one once: whole while its copies stay
        under `cache_bytes` (later lookups are then in memory), else its keys only (and a
        file holding a wanted key is read again for those rows: row groups whose key range
        holds none of them are skipped, the rows being sorted by key).
        """
        with self._lock:
            table, keys = self._tables.get(path), self._keys.get(path)
            whole = self._bytes < self.cache_bytes
        if table is None and keys is None:
            columns = ["key", *_VALUE_FIELDS] if whole else ["key"]
            read = with_retries(
                f"read translation memory {path}",
                lambda: pq.read_table(
                    path,
                    columns=columns,
                    filesystem=self.fs,
                    schema=SCHEMA,
                    page_checksum_verification=True,
                ),
            ).combine_chunks()
            with self._lock:
                if whole:
                    table = self._tables[path] = read
                    self._bytes += read.nbytes
                else:
                    keys = self._keys[path] = read.column("key")
        if table is not None:
            hits = table.filter(pc.is_in(table.column("key"), value_set=wanted))
            return hits if hits.num_rows else None
        assert keys is not None
        if not pc.any(pc.is_in(keys, value_set=wanted)).as_py():
            return None
        return with_retries(
            f"read translation memory {path}",
            lambda: pq.read_table(
                path,
                columns=["key", *_VALUE_FIELDS],
                filters=pc.field("key").isin(wanted),
                filesystem=self.fs,
                schema=SCHEMA,
                page_checksum_verification=True,
            ),
        )

    def add(self, rows: Iterable[tuple[str, StoredRow]], *, job: str) -> str | None:
        """Publish `rows` as one new file; returns its path (None when nothing to add).

        Keys repeated in `rows` are written once (the first). A read-only memory refuses.
        """
        if self.read_only:
            raise PermissionError(f"translation memory {self.url} is read-only (cache.mode)")
        unique: dict[str, StoredRow] = {}
        for key, row in rows:
            unique.setdefault(key, row)
        if not unique:
            return None
        keys = sorted(unique)
        now = time.time()
        data: dict[str, list[Any]] = {"key": keys}
        rows_values = [unique[k].values() for k in keys]
        for name in _VALUE_FIELDS:
            data[name] = [v[name] for v in rows_values]
        data["job"] = [job] * len(keys)
        data["created_at"] = [int(now * 1000)] * len(keys)
        table = pa.Table.from_pydict(data, schema=SCHEMA)
        buffer = io.BytesIO()
        # Page checksums: a file whose bytes flipped is refused when read, not served.
        pq.write_table(
            table,
            buffer,
            compression="zstd",
            row_group_size=_ROW_GROUP,
            write_page_checksum=True,
        )
        # Time first, so name order is roughly write order; the uuid keeps names unique.
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}"
        path = join(self.root, f"{_PREFIX}{stamp}-{uuid.uuid4().hex}{_SUFFIX}")
        with publish(self.fs, path) as f:
            f.write(buffer.getbuffer())
        return path
