"""`perfci run --suite smoke --endpoint URL --model M` against servers that misbehave (tests/openai_fake.py):
each run ends in bounded time, exits 5 with its record stored, and no point that met the fault reads as a
clean success."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfci.cli.main import cli
from perfci.errors import EXIT_RUN_NOT_OK
from perfci.store import open_db, row_counts
from perfci.store.records import RunRecord, read_record
from tests.openai_fake import FakeServer

pytestmark = pytest.mark.timeout(240)  # the bound: a smoke run against a silent server ends well within it


@pytest.fixture
def server():
    s = FakeServer().start()
    yield s
    s.stop()


def smoke_run(tmp_path: Path, url: str) -> RunRecord:
    """The smoke suite against `url` through the CLI; the stored record (its file and its store rows)."""
    out, db = tmp_path / "runs", tmp_path / "perfci.db"
    result = CliRunner().invoke(cli, ["run", "--suite", "smoke", "--endpoint", url, "--model", "m",
                                      "--out", str(out), "--db", str(db)])  # fmt: skip
    assert result.exit_code == EXIT_RUN_NOT_OK, result.output
    (path,) = out.glob("*.json")
    record = read_record(path)
    store = open_db(db)
    assert row_counts(store)["runs"] == 1 and row_counts(store)["points"] == len(record.points) == 4
    store.close()
    assert record.status in ("degraded", "failed") and record.error
    assert not [p for p in record.points if p.status == "ok"]
    return record


def kinds(record: RunRecord) -> set[str]:
    return {k for p in record.points for k in p.metrics.get("errors_by_kind", {})}


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        ("http_500", "http_5xx"),
        ("garbage", "bad_sse"),
        ("malformed", "bad_sse"),
        ("cut", "stream_cut"),
        ("truncated", "no_finish"),  # 3 of 16 tokens, then [DONE] and a clean end
        ("short", "short_output"),  # finish_reason "length" and usage after 3 of 16 tokens (ignore_eos was sent)
    ],
)
def test_a_server_that_answers_wrongly_fails_every_point(server, tmp_path, mode, kind):
    server.mode = mode
    record = smoke_run(tmp_path, server.url)
    assert record.status == "failed" and {p.status for p in record.points} == {"failed"}
    assert kinds(record) == {kind}
    assert all(p.metrics["errors"] == p.metrics["requests"] == 12 for p in record.points)
    assert all(set(p.requests.error_kind) == {kind} for p in record.points)


def test_a_silent_server_stops_the_run_after_three_timeouts(server, tmp_path):
    server.mode = "hang"  # headers, then nothing
    record = smoke_run(tmp_path, server.url)
    first, *rest = record.points
    assert first.status == "failed" and first.requests.error_kind == ["timeout"]  # two warmups, then one
    assert "engine stalled: 3 requests in a row timed out" in first.error
    assert first.metrics["skipped"] == 11
    assert [p.status for p in rest] == ["skipped"] * 3 and all("engine stalled at point 0" in p.error for p in rest)
    assert record.status == "failed" and "engine stalled at point 0" in record.error


def test_a_stream_that_goes_silent_midway_is_cut_by_the_idle_timeout(server, tmp_path):
    server.mode, server.cut_after = "stall", 2
    record = smoke_run(tmp_path, server.url)
    first = record.points[0]
    assert first.requests.error_kind == ["timeout"] and "idle timeout" in first.requests.error[0]
    assert first.requests.output_tokens == [2]
    assert [p.status for p in record.points] == ["failed", "skipped", "skipped", "skipped"]


def test_a_server_that_dies_mid_run_fails_the_point_and_skips_the_rest(server, tmp_path):
    server.die_after = 5  # two warmups and two measured requests are answered; then connections are refused
    record = smoke_run(tmp_path, server.url)
    first, *rest = record.points
    assert first.status == "failed" and first.metrics["completed"] == 2
    assert first.requests.error_kind[:2] == [None, None] and "connection" in first.metrics["errors_by_kind"]
    assert [p.status for p in rest] == ["skipped"] * 3


def test_refused_connections_fail_fast(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: every connection is refused
        record = smoke_run(tmp_path, f"http://127.0.0.1:{sock.getsockname()[1]}")
    first, *rest = record.points
    assert first.status == "failed" and first.metrics["requests"] == 1 and first.metrics["skipped"] == 11
    assert first.metrics["errors_by_kind"] == {"connection": 1}
    assert [p.status for p in rest] == ["skipped"] * 3 and record.status == "failed"


def test_a_well_behaved_server_gives_an_ok_run(server, tmp_path):
    """The control: the same fake server, streaming as vLLM does, makes every point ok and exits 0."""
    out, db = tmp_path / "runs", tmp_path / "perfci.db"
    result = CliRunner().invoke(cli, ["run", "--suite", "smoke", "--endpoint", server.url, "--model", "m",
                                      "--out", str(out), "--db", str(db)])  # fmt: skip
    assert result.exit_code == 0, result.output
    (path,) = out.glob("*.json")
    record = read_record(path)
    assert record.status == "ok" and {p.status for p in record.points} == {"ok"}
    assert all(p.metrics["errors_by_kind"] == {} and p.metrics["completed"] == 12 for p in record.points)
