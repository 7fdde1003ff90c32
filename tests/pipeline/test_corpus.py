from __future__ import annotations

import pyarrow as pa
import pytest

from batchmt.pipeline.inputs.corpus import CorpusError, check_schema, open_dataset
from batchmt.pipeline.spec import InputSpec
from tests.conftest import StorageRoot


def rows(start: int, n: int) -> pa.Table:
    return pa.table(
        {
            "id": list(range(start, start + n)),
            "text": [f"sentence {i}" for i in range(start, start + n)],
        }
    )


def spec(root: StorageRoot, path: str, **kw: str) -> InputSpec:
    return InputSpec(path=root.url_of(path), storage_options=root.storage_options, **kw)


def ids(dataset) -> list[int]:
    return sorted(dataset.to_table(columns=["id"]).column("id").to_pylist())


def test_single_file(storage_root: StorageRoot):
    storage_root.write_parquet("in/one.parquet", rows(0, 5))
    dataset = open_dataset(spec(storage_root, "in/one.parquet"))
    assert ids(dataset) == [0, 1, 2, 3, 4]


def test_directory_skips_hidden_and_marker_files(storage_root: StorageRoot):
    storage_root.write_parquet("in/b.parquet", rows(3, 2))
    storage_root.write_parquet("in/a.parquet", rows(0, 3))
    storage_root.write_parquet("in/sub/c.parquet", rows(5, 1))
    storage_root.write_bytes("in/_SUCCESS", b"")
    storage_root.write_bytes("in/.a.parquet.crc", b"junk")
    storage_root.write_bytes("in/_tmp/part.parquet", b"junk")
    dataset = open_dataset(spec(storage_root, "in"))
    names = [f.rsplit("/", 1)[-1] for f in dataset.files]
    assert names == ["a.parquet", "b.parquet", "c.parquet"]  # sorted, recursive
    assert ids(dataset) == list(range(6))


def test_glob(storage_root: StorageRoot):
    storage_root.write_parquet("in/x/a.parquet", rows(0, 2))
    storage_root.write_parquet("in/y/b.parquet", rows(2, 2))
    storage_root.write_bytes("in/y/notes.txt", b"not parquet")
    assert ids(open_dataset(spec(storage_root, "in/*/*.parquet"))) == [0, 1, 2, 3]
    assert ids(open_dataset(spec(storage_root, "in/**/*.parquet"))) == [0, 1, 2, 3]


def test_hive_partitions_become_string_columns(storage_root: StorageRoot):
    storage_root.write_parquet("in/dt=2026-01-01/part.parquet", rows(0, 2))
    storage_root.write_parquet("in/dt=2026-01-02/part.parquet", rows(2, 1))
    dataset = open_dataset(spec(storage_root, "in"))
    assert dataset.schema.field("dt").type == pa.string()
    table = dataset.to_table().sort_by("id")
    assert table.column("dt").to_pylist() == ["2026-01-01", "2026-01-01", "2026-01-02"]


def test_missing_path_names_it(storage_root: StorageRoot):
    with pytest.raises(CorpusError, match=r"input.path .*nowhere not found"):
        open_dataset(spec(storage_root, "nowhere"))


def test_empty_glob_is_an_error(storage_root: StorageRoot):
    storage_root.write_parquet("in/a.parquet", rows(0, 1))
    with pytest.raises(CorpusError, match="matched no data files"):
        open_dataset(spec(storage_root, "in/*.csv"))


def test_missing_text_column_one_line(storage_root: StorageRoot):
    table = pa.table({"id": [1], "body": ["x"], "lang": ["en"]})
    storage_root.write_parquet("in/a.parquet", table)
    input_spec = spec(storage_root, "in")
    with pytest.raises(
        CorpusError,
        match=r"^input column 'text' not found in .*in \(columns: id, body, lang\); "
        r"set input.text_column$",
    ):
        check_schema(open_dataset(input_spec), input_spec)
    check_schema(open_dataset(input_spec), input_spec.model_copy(update={"text_column": "body"}))


def test_missing_id_column(tmp_path):
    schema = pa.schema([("key", pa.int64()), ("text", pa.string())])
    with pytest.raises(CorpusError, match=r"input column 'id' not found .*set input.id_column"):
        check_schema(schema, InputSpec(path=str(tmp_path)))


GOOD_OPTIONAL = [
    ("context", pa.list_(pa.string())),
    ("context", pa.large_list(pa.large_string())),
    ("glossary", pa.list_(pa.struct([("source", pa.string()), ("target", pa.string())]))),
    ("doc_id", pa.string()),
    ("doc_id", pa.int64()),
    ("seg_idx", pa.int32()),
    ("reference", pa.string()),
]
BAD_OPTIONAL = [
    ("context", pa.string(), r"'context' has type string; expected list<string>"),
    (
        "context",
        pa.list_(pa.int64()),
        r"'context' has type list<item: int64>; expected list<string>",
    ),
    (
        "glossary",
        pa.list_(pa.struct([("src", pa.string())])),
        r"'glossary' .* expected list<struct<source",
    ),
    ("doc_id", pa.list_(pa.string()), r"'doc_id' .* expected a scalar"),
    ("seg_idx", pa.string(), r"'seg_idx' has type string; expected an integer"),
    ("reference", pa.int64(), r"'reference' has type int64; expected string"),
]


@pytest.mark.parametrize(("name", "dtype"), GOOD_OPTIONAL)
def test_optional_columns_accepted(tmp_path, name: str, dtype: pa.DataType):
    schema = pa.schema([("id", pa.int64()), ("text", pa.string()), (name, dtype)])
    check_schema(schema, InputSpec(path=str(tmp_path)))


@pytest.mark.parametrize(("name", "dtype", "message"), BAD_OPTIONAL)
def test_optional_columns_rejected(tmp_path, name: str, dtype: pa.DataType, message: str):
    schema = pa.schema([("id", pa.int64()), ("text", pa.string()), (name, dtype)])
    with pytest.raises(CorpusError, match=message):
        check_schema(schema, InputSpec(path=str(tmp_path)))
