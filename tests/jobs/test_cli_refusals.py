"""More jobs that cannot run, each refused with exit 2 and one line before any work, or with
one line where a traceback used to be (no Ray: nothing gets as far as translating)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.jobs.test_cli_errors import config, one_line_error
from batchmt.jobs.cli import main


@pytest.mark.parametrize(
    "where", ["in/memory", "out", "out/data/memory", "."], ids=["input", "output", "data", "above"]
)
def test_cache_path_inside_the_input_or_the_output_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["x"]}), tmp_path / "in" / "part-0.parquet")
    job = config(
        tmp_path,
        input={"path": str(tmp_path / "in")},
        cache={"path": str(tmp_path / where)},
    )
    assert main(["run", job]) == 2
    err = one_line_error(capsys)
    assert "cache.path" in err and str(tmp_path / where).rstrip("/.") in err
    assert not (tmp_path / "out").exists()
