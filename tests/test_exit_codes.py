"""The exit-code contract (perfci.cli.main.EXIT_CODES, docs/cli.md): each command driven into each outcome it can
reach, on real stores, real record files, real sim engines and real closed ports; and the checks `perfci run`
makes on --out and --db before it measures anything."""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfci import store
from perfci.bisect import drivers as bisector
from perfci.cli.main import cli
from perfci.measure import hardware
from perfci.store.records import RunRecord, write_record
from perfci.utc import stamp
from tests.conftest import _RECORD

ROOT = Path(__file__).resolve().parents[1]
TINY_SUITE = """
name = "tiny"
[[models]]
name = "m"
[[workloads]]
name = "w"
prompt_tokens = 8
output_tokens = 4
load = { concurrency = [1] }
[run]
requests = 2
warmup_requests = 0
ready_timeout_s = 60
[startup]
caches = ["warm"]
first_request = false
[sim]
startup_s = 0.1
decode_ms_per_token = 1
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _record(version: str, *, slowdown: float, minute: int, repeat_noise: list[float]) -> RunRecord:
    """A run of build sim==`version`: one point per repeat, latencies `slowdown` times a base, throughput divided."""
    data = copy.deepcopy(_RECORD) | {"run_id": f"00000000-0000-4000-8000-{minute:012d}", "status": "ok",
                                     "created": stamp(datetime(2026, 11, 1, 0, minute, tzinfo=UTC))}  # fmt: skip
    data["build"] = {"engine": "sim", "version": version, "commit": None, "source": "builtin"}
    template = data["points"][0]
    data["points"] = []
    for repeat, noise in enumerate(repeat_noise):
        f = slowdown * (1 + noise)
        point = copy.deepcopy(template) | {"index": repeat, "repeat": repeat}
        for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
            point["metrics"][name] = {k: v * f for k, v in template["metrics"][name].items()}
        point["metrics"]["output_throughput"] = template["metrics"]["output_throughput"] / f
        data["points"].append(point)
    return RunRecord.model_validate(data)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Stores and files for every case: ok.db (two builds alike), reg.db (a third build 30% slower), record files
    good and corrupt, a corrupt store, suites good and bad, a watch config whose only source is a closed port."""
    d = tmp_path_factory.mktemp("exit-codes")
    noise = [0.0, 0.01, -0.01, 0.02, -0.02]
    runs = [_record("0.1.0", slowdown=1.0, minute=1, repeat_noise=noise),
            _record("0.2.0", slowdown=1.0, minute=2, repeat_noise=noise[::-1]),
            _record("0.3.0", slowdown=1.3, minute=3, repeat_noise=noise)]  # fmt: skip
    for name, stored in (("ok.db", runs[:2]), ("reg.db", runs)):
        db = store.open_db(d / name)
        for run in stored:
            store.ingest(db, run)
        db.close()
    for run in runs:
        write_record(run, d / "records")
    (d / "good.json").write_bytes((d / "records" / f"{runs[0].run_id}.json").read_bytes())
    (d / "corrupt.json").write_text((d / "good.json").read_text()[:300])
    (d / "corrupt.db").write_text("not a database\n" * 100)
    (d / "existing.json").write_text("a record someone kept\n")
    (d / "tiny.toml").write_text(TINY_SUITE)
    (d / "bad.toml").write_text(TINY_SUITE.replace("prompt_tokens", "prompt_tokenz"))
    # Ready within 60 s even on a loaded machine; never ready within 2 s when the sim takes 10 minutes to start.
    (d / "never-ready.toml").write_text(TINY_SUITE.replace("ready_timeout_s = 60", "ready_timeout_s = 2"))
    (d / "watch.toml").write_text('[engines.vllm]\nsince = "0.1.0"\nhardware = ["h100"]\nsuites = ["smoke"]\n'
                                  f'sources = [{{ kind = "simple", url = "http://127.0.0.1:{_closed_port()}/" }}]\n')
    return d


@pytest.fixture
def invoke(world, tmp_path, monkeypatch):
    """Run perfci in-process in a fresh directory, with its cache (and crash reports) under tmp_path."""
    monkeypatch.setenv("PERFCI_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)

    def run(*args: str):
        return CliRunner().invoke(cli, [a.format(w=world, t=tmp_path) for a in args])

    return run


SIM_RUN = ("run", "--suite", "{w}/tiny.toml", "--engine", "sim", "--db", "{t}/run.db", "--out", "{t}/runs")
STEP = ("bisect-step", "--suite", "{w}/tiny.toml", "--point", "w/c=1", "--metric", "ttft_ms_p50", "--trials", "1",
        "--db", "{t}/step.db", "--out", "{t}/runs")  # fmt: skip
BISECT = ("bisect", "--engine", "vllm", "--good", "0.1.0", "--bad", "0.2.0", "--suite", "{w}/tiny.toml", "--point",
          "w/c=1", "--metric", "ttft_ms_p50", "--db", "{t}/b.db")  # fmt: skip

CASES = {
    0: [SIM_RUN,
        ("show", "--db", "{w}/ok.db"),
        ("ingest", "{w}/records", "--db", "{t}/i.db"),
        ("compare", "sim==0.1.0", "sim==0.2.0", "--db", "{w}/ok.db"),
        ("detect", "--db", "{w}/ok.db"),
        ("regressions", "--db", "{w}/reg.db"),
        ("doctor", "--force"),
        ("env", "list"),
        ("bisect", "list", "--db", "{w}/ok.db"),
        ("data", "push", "{w}/good.json", "--data", "{t}/data"),
        ("db", "rebuild", "{w}/records", "--db", "{t}/r.db"),
        ("dashboard", "--db", "{w}/ok.db", "--out", "{t}/site"),
        ("env", "prune", "--all"),
        ("plan", "--config", "{w}/watch.toml", "--db", "{t}/w.db", "--dry-run"),  # nothing watched yet: no jobs
        ("report", "--baseline", "sim==0.1.0", "--candidate", "sim==0.2.0", "--db", "{w}/ok.db"),
        (*STEP, "--engine", "sim", "--threshold", "1e9")],  # fmt: skip
    1: [("detect", "--db", "{w}/reg.db"),
        (*STEP, "--engine", "sim", "--threshold", "0")],  # fmt: skip
    2: [("run",),  # click's own usage error
        ("run", "--suite", "{w}/bad.toml", "--engine", "sim"),
        ("run", "--suite", "{w}/tiny.toml", "--engine", "nope==1"),
        ("ingest", "{w}/corrupt.json", "--db", "{t}/i.db"),
        ("show", "--db", "{w}/corrupt.db"),
        ("compare", "vllm==9.9", "sim==0.1.0", "--db", "{w}/ok.db"),
        ("ack", "999", "--why", "x", "--db", "{w}/ok.db"),
        ("env", "prune"),
        ("data", "push", "{w}/corrupt.json", "--data", "{t}/data"),
        ("bisect",),
        ("bisect", "status", "99", "--db", "{w}/ok.db"),
        ("bisect", "resume", "99", "--db", "{w}/ok.db"),
        ("bisect", "abort", "99", "--db", "{w}/ok.db"),
        ("data", "pull", "--data", "{t}/nowhere", "--db", "{t}/d.db"),
        ("watch", "--config", "{t}/missing.toml"),
        ("plan", "--config", "{w}/tiny.toml", "--db", "{t}/p.db"),
        ("dashboard", "--db", "{t}/missing.db"),
        ("report", "--baseline", "sim==0.1.0", "--db", "{w}/ok.db"),
        ("report", "--ab", "latest", "--db", "{w}/ok.db"),  # no A/B session stored
        ("ab", "--baseline", "sim", "--candidate", "sim", "--suite", "{w}/tiny.toml", "--blocks", "2"),
        ("ab", "--baseline", "sim", "--candidate", "sim:{t}/missing.toml", "--suite", "{w}/tiny.toml")],  # fmt: skip
    4: [("watch", "--config", "{w}/watch.toml", "--db", "{t}/w.db"),
        (*BISECT, "--index-url", f"http://127.0.0.1:{_closed_port()}/simple"),
        ("report", "--pr", "7", "--repo", "o/n", "--baseline", "sim==0.1.0", "--candidate", "sim==0.2.0", "--db",
         "{w}/ok.db")],  # fmt: skip
    5: [("run", "--suite", "{w}/never-ready.toml", "--engine", "sim", "--sim", "startup_s=600", "--db", "{t}/nr.db"),
        ("run", "--suite", "{w}/tiny.toml", "--engine", "vllm:/nonexistent/python", "--db", "{t}/x.db")],
    125: [(*STEP, "--engine", "vllm:/nonexistent/python", "--threshold", "1")],
    255: [(*STEP[:2], "{w}/bad.toml", *STEP[3:], "--engine", "sim", "--threshold", "1")],
}  # fmt: skip


@pytest.mark.parametrize(("args", "code"), [(args, code) for code, cases in CASES.items() for args in cases],
                         ids=lambda v: " ".join(v).replace("{w}/", "").replace("{t}/", "") if isinstance(v, tuple)
                         else f"exit-{v}")  # fmt: skip
def test_each_command_exits_with_the_code_of_its_outcome(invoke, args, code):
    result = invoke(*args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output


def test_a_run_that_failed_is_stored_before_it_exits_5(invoke, tmp_path):
    result = invoke("run", "--suite", "{w}/never-ready.toml", "--engine", "sim", "--sim", "startup_s=600", "--db",
                    "{t}/run.db", "--out", "{t}/runs", "--json")  # fmt: skip
    assert result.exit_code == 5
    (path,) = (tmp_path / "runs").glob("*.json")
    assert json.loads(path.read_text())["status"] == "failed"
    assert store.row_counts(store.open_db(tmp_path / "run.db"))["runs"] == 1


@pytest.fixture
def dirty_gpu(monkeypatch):
    """The preflight's verdict on a GPU with foreign processes (this machine's GPU, if any, is not dirtied)."""
    monkeypatch.setattr(hardware, "preflight", lambda **_: hardware.Preflight(["GPU 0: 2 process(es) running: [7, 8]"]))


@pytest.mark.parametrize("args", [("doctor",), SIM_RUN], ids=["doctor", "run"])
def test_a_dirty_gpu_exits_3_naming_the_problem(invoke, dirty_gpu, args, tmp_path):
    result = invoke(*args)
    assert result.exit_code == 3 and "2 process(es) running" in result.output
    assert not (tmp_path / "runs").exists()  # nothing measured, nothing written


# --- internal errors and signals ---------------------------------------------------------------------------


def _crash_reports(cache: Path) -> list[Path]:
    return sorted((cache / "crashes").glob("perfci-crash-*.txt"))


def test_an_unexpected_exception_exits_70_with_one_line_and_its_traceback_in_a_file(invoke, world, monkeypatch,
                                                                                     tmp_path):  # fmt: skip
    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom [red]x[/] [/y]\nsecond line")

    monkeypatch.setattr(store, "runs_frame", broken)
    result = invoke("show", "--db", "{w}/ok.db")
    assert result.exit_code == 70
    (report,) = _crash_reports(tmp_path / "cache")
    assert result.stderr == f"internal error: ZeroDivisionError: boom [red]x[/] [/y]…; traceback written to {report}\n"
    text = report.read_text()
    assert "Traceback (most recent call last)" in text and "in broken" in text and "second line" in text
    assert "show --db" in text  # the command line, for the bug report


def test_an_unexpected_exception_in_a_real_process_exits_70_and_names_its_crash_report(world, tmp_path):
    """`python -m perfci`'s own entry point, in a process of its own, with one library function broken."""
    entry = ("import runpy, perfci.store\n"
             "def broken(*args, **kwargs):\n    raise LookupError('no such [bold]thing[/]')\n"
             "perfci.store.runs_frame = broken\n"
             "runpy.run_module('perfci', run_name='__main__', alter_sys=True)\n")  # fmt: skip
    env = {**os.environ, "PERFCI_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", entry, "show", "--db", str(world / "ok.db")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 70, done.stderr
    (report,) = _crash_reports(tmp_path / "cache")
    assert done.stderr == f"internal error: LookupError: no such [bold]thing[/]; traceback written to {report}\n"
    assert "in broken\nLookupError: no such [bold]thing[/]" in report.read_text()


def test_a_crash_report_goes_to_the_temp_dir_when_the_cache_cannot_hold_it(invoke, world, monkeypatch, tmp_path):
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() caches its first answer
    monkeypatch.setattr(store, "runs_frame", lambda *a, **k: {}["missing"])
    result = invoke("show", "--db", "{w}/ok.db")
    assert result.exit_code == 70
    (report,) = (tmp_path / "tmp").glob("perfci-crash-*.txt")
    assert f"internal error: KeyError: 'missing'; traceback written to {report}" in result.stderr


def test_bisect_step_aborts_the_bisect_on_an_internal_error_instead_of_calling_the_commit_bad(invoke, monkeypatch,
                                                                                               tmp_path):  # fmt: skip
    monkeypatch.setattr(bisector, "step", lambda *a, **k: [][0])
    result = invoke(*STEP, "--engine", "sim", "--threshold", "1")
    assert result.exit_code == 255  # git bisect run stops on it; 70 would mark the commit bad
    assert result.stderr.startswith("internal error: IndexError: list index out of range; traceback written to ")
    assert len(_crash_reports(tmp_path / "cache")) == 1


def test_an_interrupt_exits_130_and_is_no_internal_error(invoke, monkeypatch, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "runs_frame", interrupted)
    result = invoke("show", "--db", "{w}/ok.db")
    assert result.exit_code == 130 and result.stderr == "interrupted\n"
    assert not (tmp_path / "cache" / "crashes").exists()


def test_a_reader_that_goes_away_ends_the_command_quietly_with_141(world, tmp_path):
    env = {**os.environ, "PERFCI_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "perfci", "show", "--db", str(world / "ok.db")], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.close()  # before perfci has imported its modules, let alone printed
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and stderr == b""


# --- outputs checked before anything is measured -----------------------------------------------------------


@pytest.mark.parametrize(("out", "db", "message"), [
    ("{w}/existing.json", "{t}/x.db", "existing.json: already exists; run records are never overwritten"),
    ("{w}/existing.json/r.json", "{t}/x.db", "existing.json is not a directory"),
    ("{w}/existing.json/deeper/runs", "{t}/x.db", "existing.json is not a directory"),
    ("{t}/runs", "{t}", "is a directory"),  # click's own check, before the library's
    ("{t}/runs", "{t}/missing/x.db", "x.db: {t}/missing does not exist"),
    ("{t}/runs", "{w}/existing.json/x.db", "existing.json is not a directory"),
    ("{t}/runs", "{w}/corrupt.db", "corrupt.db: not a SQLite database"),
], ids=["out-exists", "out-under-a-file", "out-dir-under-a-file", "db-is-a-dir", "db-dir-missing",
        "db-dir-is-a-file", "db-not-a-store"])  # fmt: skip
def test_run_refuses_a_bad_out_or_db_before_it_starts_an_engine(invoke, world, tmp_path, out, db, message):
    before = (world / "existing.json").read_text()
    result = invoke("run", "--suite", "{w}/tiny.toml", "--engine", "sim", "--out", out, "--db", db)
    assert result.exit_code == 2, result.output
    assert message.format(t=tmp_path) in result.stderr
    assert "starting sim" not in result.output  # no engine started
    assert (world / "existing.json").read_text() == before
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x.db").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only directories")
@pytest.mark.parametrize(("out", "db", "message"), [
    ("{t}/ro/runs", "{t}/x.db", "ro is not writable"),
    ("{t}/ro/r.json", "{t}/x.db", "ro is not writable"),
    ("{t}/runs", "{t}/ro/x.db", "directory {t}/ro is not writable"),
], ids=["out-in-read-only-dir", "out-file-in-read-only-dir", "db-in-read-only-dir"])  # fmt: skip
def test_run_refuses_outputs_in_a_read_only_directory_before_it_starts_an_engine(invoke, tmp_path, out, db, message):
    (tmp_path / "ro").mkdir(mode=0o555)
    try:
        result = invoke("run", "--suite", "{w}/tiny.toml", "--engine", "sim", "--out", out, "--db", db)
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert result.exit_code == 2, result.output
    assert message.format(t=tmp_path) in result.stderr
    assert "starting sim" not in result.output
    assert list((tmp_path / "ro").iterdir()) == []


def test_run_refuses_a_read_only_store_file_before_it_starts_an_engine(invoke, world, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes read-only files")
    (tmp_path / "ro.db").write_bytes((world / "ok.db").read_bytes())
    (tmp_path / "ro.db").chmod(0o444)
    result = invoke(*SIM_RUN[:5], "--db", "{t}/ro.db")
    assert result.exit_code == 2 and "ro.db: store file is not writable" in result.stderr


def test_ingest_of_a_directory_loads_every_record_under_it(world, tmp_path):
    nested = tmp_path / "in" / "2026" / "11"
    nested.mkdir(parents=True)
    for path in (world / "records").glob("*.json"):
        (nested / path.name).write_bytes(path.read_bytes())
    (tmp_path / "in" / "notes.txt").write_text("not a record, not *.json: not read")
    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "in"), "--db", str(tmp_path / "i.db"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"] == {"ingested": 3, "already_present": 0, "refused": 0}
    assert store.row_counts(store.open_db(tmp_path / "i.db"))["runs"] == 3


def test_ingest_refuses_json_nested_too_deeply_to_read_with_exit_2(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "deep.json"), "--db", str(tmp_path / "i.db")])
    assert result.exit_code == 2
    assert "deep.json: not a run record: JSON nested too deeply to read" in result.output


# --- user data is printed as it is, never read as markup ---------------------------------------------------


def test_an_endpoint_error_with_brackets_prints_instead_of_crashing(invoke, tmp_path):
    result = invoke("run", "--suite", "smoke", "--endpoint", "https://h:1", "--model", "m", "--db", "{t}/x.db")
    assert result.exit_code == 2
    assert "base_url must be http://host[:port][/path], got 'https://h:1'" in result.stderr


def test_a_suite_path_with_brackets_is_named_as_it_is(invoke):
    result = invoke("run", "--suite", "x[/y].toml", "--engine", "sim")
    assert result.exit_code == 2 and "error: x[/y].toml: cannot read suite" in result.stderr


def test_messages_with_markup_tags_print_verbatim(invoke, world):
    result = invoke("compare", "[red]a[/]", "[red]b[/]", "--db", "{w}/ok.db")
    assert result.exit_code == 2 and re.search(r"error: cannot read '\[red\][ab]\[/\]' as a run or a build", result.stderr)
    result = invoke("ingest", "[red]x[/].json", "--db", "{w}/ok.db")
    assert result.exit_code == 2 and "[red]x[/].json: cannot read" in result.output
