"""More jobs that cannot run, each refused with exit 2 and one line before any work, or with
one line where a traceback used to be (no Ray: nothing gets as far as translating)."""

from __future__ import annotations

import errno
import http.server
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchmt.jobs.cli import main
from batchmt.jobs.prepare import make_plan
from batchmt.pipeline.outputs import lease
from batchmt.pipeline.outputs.commit import OutputLayout, prepare_output
from batchmt.pipeline.spec import load_spec
from tests.jobs.test_cli_errors import config, one_line_error


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


def test_filter_nested_thousands_deep_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in" / "lang=de").mkdir(parents=True)
    pq.write_table(
        pa.table({"id": ["a"], "text": ["x"]}), tmp_path / "in" / "lang=de" / "p.parquet"
    )
    deep = "(" * 3000 + "lang = 'de'" + ")" * 3000
    job = config(tmp_path, input={"path": str(tmp_path / "in"), "filter": deep})
    assert main(["plan", job]) == 2
    err = one_line_error(capsys)
    assert "input.filter" in err and "nested" in err and len(err) < 400


def test_disk_full_when_taking_the_lease_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tiny_marian: Path,
) -> None:
    pq.write_table(pa.table({"id": ["a"], "text": ["x"]}), tmp_path / "in.parquet")

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lease, "_create_exclusive", full)
    assert main(["run", config(tmp_path, model={"name_or_path": str(tiny_marian)})]) == 2
    err = one_line_error(capsys)
    assert "No space left on device" in err and "lease" in err
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_verify_after_the_input_shrank_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = pa.table({"id": [f"r{i}" for i in range(6)], "text": ["x"] * 6})
    pq.write_table(rows, tmp_path / "in.parquet", row_group_size=3)
    job = config(tmp_path)
    spec = load_spec(job)
    # What a run leaves: the frozen plan of the two row groups (nothing translated yet).
    prepare_output(OutputLayout.open(spec.output), make_plan(spec), spec.fingerprint())
    pq.write_table(rows.slice(0, 2), tmp_path / "in.parquet")  # one row group of 2 rows
    assert main(["verify", job]) == 2
    err = one_line_error(capsys)
    assert "in.parquet changed since the job planned it" in err


class _TokenHead(http.server.BaseHTTPRequestHandler):
    """A Ray dashboard with token authentication, to a client without the token."""

    def _refuse(self) -> None:
        body = b"Unauthorized: missing or invalid authentication token"
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _refuse

    def log_message(self, *_args: object) -> None:
        pass


def test_submit_to_a_head_with_token_auth_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenHead)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    address = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert main(["submit", config(tmp_path), "--address", address]) == 2
    finally:
        server.shutdown()
    err = one_line_error(capsys)
    assert address in err and "token" in err and "RAY_AUTH_TOKEN" in err
