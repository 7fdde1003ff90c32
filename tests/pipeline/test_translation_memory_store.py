"""The translation memory's storage on a local folder and on S3 (moto's server): rows come
back exactly as stored, duplicates resolve the same way for every reader, read_only and off
are honoured, and writers running at once leave the memory readable and complete."""

from __future__ import annotations

import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

import pytest

from batchmt.pipeline.memory.store import MemoryReadError, StoredRow, TranslationMemory
from batchmt.pipeline.quality.qe import RowQe
from batchmt.pipeline.results import MemoryCounts, RowResult, ShardResult
from batchmt.pipeline.spec import CacheSpec
from tests.conftest import StorageRoot

ROW = StoredRow(
    RowResult(
        translation="Ein Hund läuft. 🙂",
        status="ok_fallback",
        error="re-translated by quality.fallback",
        glossary_hits=["Hund"],
        glossary_missed=[],
        format_status="ok",
        format_detail=None,
        logprob=-0.123456789012345,
    ),
    RowQe(score=0.7071067811865476, flags=[], target_prob=0.9, logprob=-0.3),
)


def memory_at(root: StorageRoot, mode: str = "read_write") -> TranslationMemory:
    spec = CacheSpec.model_validate(
        {"path": root.url_of("tm"), "mode": mode, "storage_options": root.storage_options}
    )
    memory = TranslationMemory.open(spec)
    assert memory is not None
    return memory


def test_rows_come_back_exactly_as_stored(storage_root: StorageRoot) -> None:
    memory = memory_at(storage_root)
    assert memory.lookup({"k1"}) == {}  # no folder yet: an empty memory, not an error
    plain = StoredRow(RowResult("Hallo", "ok"))  # null lists and scores stay null, not empty
    assert memory.add([("k1", ROW), ("k2", plain), ("k1", plain)], job="j") is not None
    found = memory.lookup(["k1", "k2", "k3"])
    assert found == {"k1": ROW, "k2": plain}  # k1 written once: the first given
    assert found["k1"].result.glossary_missed == [] and found["k2"].result.glossary_missed is None


def test_duplicates_across_files_resolve_alike_for_every_reader(storage_root: StorageRoot) -> None:
    writer = memory_at(storage_root)
    writer.add([("k", StoredRow(RowResult("first", "ok")))], job="a")
    time.sleep(0.01)  # file names start with the time in ms
    writer.add(
        [("k", StoredRow(RowResult("second", "ok"))), ("other", StoredRow(RowResult("x", "ok")))],
        job="b",
    )
    readers = [memory_at(storage_root) for _ in range(2)]
    readers[1].cache_bytes = 0  # a replica past its RAM budget: keys only, rows from storage
    assert [r.lookup({"k"})["k"].result.translation for r in readers] == ["first", "first"]
    # A reader that saw the memory before a file was added sees it on its next lookup.
    assert readers[0].lookup({"late"}) == {}
    writer.add([("late", StoredRow(RowResult("spät", "ok")))], job="c")
    for reader in readers:
        assert reader.lookup({"late", "other", "k"}) == {
            "late": StoredRow(RowResult("spät", "ok")),
            "other": StoredRow(RowResult("x", "ok")),
            "k": StoredRow(RowResult("first", "ok")),
        }


def test_read_only_never_writes_and_off_or_unset_is_no_memory(tmp_path: Path) -> None:
    root = StorageRoot("local", str(tmp_path))
    memory_at(root).add([("k", ROW)], job="j")
    read_only = memory_at(root, "read_only")
    assert read_only.lookup({"k"}) == {"k": ROW}
    with pytest.raises(PermissionError, match=r"cache\.mode"):
        read_only.add([("k2", ROW)], job="j")
    assert len(read_only.files()) == 1
    assert TranslationMemory.open(CacheSpec(path=str(tmp_path / "tm"), mode="off")) is None
    assert TranslationMemory.open(CacheSpec()) is None


def test_unreadable_memory_names_the_memory_and_the_fix(tmp_path: Path) -> None:
    root = StorageRoot("local", str(tmp_path))
    (tmp_path / "tm").mkdir()
    (tmp_path / "tm" / "part-99999999T000000000-junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(MemoryReadError, match=r"tm.*none of its 1 file.*cache.mode=off"):
        memory_at(root).lookup({"k"})


def test_an_unreadable_file_is_skipped_and_logged_once_the_rest_serve(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #23, finding 9: a file cut in half, random bytes named part-*.parquet, and a
    file with 16 flipped bytes each cost only their own rows."""
    root = StorageRoot("local", str(tmp_path))
    writer = memory_at(root)
    good = {f"g{i}": StoredRow(RowResult(f"gut {i} " * 4, "ok")) for i in range(200)}
    writer.add(good.items(), job="j")
    folder = tmp_path / "tm"
    for name, rows in (("cut", 200), ("flip", 200)):
        damaged = [
            (f"{name}{i}", StoredRow(RowResult(f"{name} {i} " * 4, "ok"))) for i in range(rows)
        ]
        path = writer.add(damaged, job="j")
        assert path is not None
        data = bytearray(Path(path).read_bytes())
        if name == "cut":
            data = data[: len(data) // 2]
        else:
            # Inside the first data page (the footer is at the end): the page checksum
            # refuses it; without one, the flipped text would have been served.
            data[64:80] = bytes(b ^ 0xFF for b in data[64:80])
        Path(path).write_bytes(bytes(data))
    (folder / "part-00000000T000000000-random.parquet").write_bytes(
        random.Random(3).randbytes(5000)
    )
    reader = memory_at(root)
    wanted = set(good) | {f"cut{i}" for i in range(200)} | {f"flip{i}" for i in range(200)}
    for _ in range(3):
        found = reader.lookup(wanted)
        assert found == good  # every good row served; nothing from a damaged file
    logged = [r for r in caplog.records if "memory_file_unreadable" in r.getMessage()]
    assert len(logged) == 3  # once per damaged file, not per lookup


def _writer(url: str, options: dict[str, Any], worker: int, files: int, rows: int) -> None:
    memory = TranslationMemory.open(CacheSpec(path=url, storage_options=options))
    assert memory is not None
    for f in range(files):
        batch = [
            (f"w{worker}-{f}-{r}", StoredRow(RowResult(f"t{worker}-{f}-{r}", "ok")))
            for r in range(rows)
        ]
        # Every writer also writes one key the other writes too (the same segment
        # decoded by two replicas at once).
        batch.append((f"shared-{f}", StoredRow(RowResult(f"shared-{f}", "ok"))))
        memory.add(batch, job=f"replica-{worker}")


def test_two_writers_at_once_leave_the_memory_readable_and_complete(
    storage_root: StorageRoot,
) -> None:
    url, options = storage_root.url_of("tm"), storage_root.storage_options
    files, rows = 8, 300
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_writer, args=(url, options, w, files, rows)) for w in range(2)
    ]
    for process in writers:
        process.start()
    reader = memory_at(storage_root)
    wanted = {f"w{w}-{f}-{r}" for w in range(2) for f in range(files) for r in range(rows)}
    seen = 0
    # Read while they write: every lookup succeeds and returns whole rows only.
    while any(p.is_alive() for p in writers):
        found = reader.lookup(wanted)
        assert all(row.result.translation == "t" + key[1:] for key, row in found.items())
        assert len(found) >= seen
        seen = len(found)
        time.sleep(0.05)  # two cores shared with the writers
    for process in writers:
        process.join()
        assert process.exitcode == 0
    found = memory_at(storage_root).lookup(wanted | {f"shared-{f}" for f in range(files)})
    assert len(found) == len(wanted) + files
    assert len(reader.files()) == 2 * files


def test_markers_without_memory_counts_still_read_and_total() -> None:
    old = ShardResult.from_dict({"shard_id": "00000", "num_rows": 3})  # before the memory
    assert old.memory is None and "memory" not in old.to_dict()
    new = ShardResult("00001", 4, memory=MemoryCounts(from_memory=3, deduplicated=1, stored=1))
    assert ShardResult.from_dict(new.to_dict()) == new
    assert ShardResult.memory_total([old, new, new]) == {
        "from_memory": 6,
        "deduplicated": 2,
        "stored": 2,
    }
