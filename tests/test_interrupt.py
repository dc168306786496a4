"""`perfci run` stopped by SIGTERM, SIGINT or `kill -9` while its sim engine starts or serves a point: the
engine never outlives it, a stored `interrupted` record keeps what was measured, no temp dir stays, and it
exits 128 + the signal. perfci runs as a real subprocess; what survives it is found by scanning /proc."""

import signal
import tempfile
import time
from contextlib import ExitStack

import pytest

from perfci.errors import EXIT_SIGNAL_BASE
from perfci.measure import runner
from perfci.measure.server import port_in_use
from perfci.store import open_db
from tests.lifetime import engine_processes, left_over, records_in, start_perfci, temp_dirs, wait_for

SUITE = """
name = "t"
[[models]]
name = "m"
[[workloads]]
name = "w"
prompt_tokens = 16
output_tokens = 8
load = { concurrency = [1, 2] }
[run]
duration_s = 30
warmup_requests = 0
[startup]
caches = ["cold"]  # one start, whatever the caches hold (a warm one may prime first)
[sim]
startup_s = STARTUP
decode_ms_per_token = 5
"""
SIM = "perfci.measure.simulator"


def run_sim(tmp_path, *, startup_s: float):
    (tmp_path / "t.toml").write_text(SUITE.replace("STARTUP", str(startup_s)))
    return start_perfci(["run", "--suite", "t.toml", "--engine", "sim", "--db", "p.db", "--out", "runs"], tmp_path)


def sim_port(cmd: str) -> int:
    words = cmd.split()
    return int(words[words.index("--port") + 1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_engine_startup_stops_the_engine_and_stores_an_interrupted_record(tmp_path, sig):
    perfci, marker = run_sim(tmp_path, startup_s=10)
    engine = wait_for(lambda: engine_processes(marker, perfci.pid, SIM), timeout_s=60, what="the sim engine")
    time.sleep(1.0)  # the engine is up and still starting (10 s)
    perfci.send_signal(sig)
    _, err = perfci.communicate(timeout=60)
    assert perfci.returncode == EXIT_SIGNAL_BASE + sig, err
    assert f"stopped by {sig.name}" in err
    assert left_over(marker, timeout_s=5) == []
    assert not port_in_use(sim_port(engine[0][1]))
    assert temp_dirs(tmp_path) == []
    (record,) = records_in(tmp_path / "runs")
    assert record["status"] == "interrupted" and f"interrupted by {sig.name}" in record["error"]
    (start,) = record["startups"]
    assert not start["ready"] and sig.name in start["error"]
    assert [p["status"] for p in record["points"]] == ["skipped", "skipped"]
    (row,) = open_db(tmp_path / "p.db").query("SELECT run_id, status FROM runs")
    assert row == {"run_id": record["run_id"], "status": "interrupted"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_point_keeps_the_points_measured_before_it(tmp_path, sig):
    """The first point runs its 30 s; the signal comes 4 s into it. Its samples are cut short, so it is not
    a measurement: skipped like the point after it, and nothing measured is lost (the startup is kept)."""
    perfci, marker = run_sim(tmp_path, startup_s=0.2)
    (pid, cmd), *_ = wait_for(lambda: engine_processes(marker, perfci.pid, SIM), timeout_s=60, what="the engine")
    wait_for(lambda: port_in_use(sim_port(cmd)), timeout_s=30, what="the engine's port")
    time.sleep(4.0)
    perfci.send_signal(sig)
    _, err = perfci.communicate(timeout=60)
    assert perfci.returncode == EXIT_SIGNAL_BASE + sig, err
    assert left_over(marker, timeout_s=5) == []
    assert temp_dirs(tmp_path) == []
    (record,) = records_in(tmp_path / "runs")
    assert record["status"] == "interrupted"
    (start,) = record["startups"]
    assert start["ready"] and start["total_s"] > 0.2
    assert [p["status"] for p in record["points"]] == ["skipped", "skipped"]
    db = open_db(tmp_path / "p.db")
    assert [r["status"] for r in db.query("SELECT status FROM runs")] == ["interrupted"]
    assert db.execute("SELECT count(*) FROM startup_phases").fetchone()[0] > 0


def test_signal_in_a_later_point_stores_the_finished_points(tmp_path):
    (tmp_path / "t.toml").write_text(SUITE.replace("STARTUP", "0.2").replace("duration_s = 30", "duration_s = 2"))
    suite = (tmp_path / "t.toml").read_text().replace("concurrency = [1, 2]", "concurrency = [1, 2, 4, 8, 16]")
    (tmp_path / "t.toml").write_text(suite)
    perfci, marker = start_perfci(["run", "--suite", "t.toml", "--engine", "sim", "--db", "p.db", "--out", "runs"],
                                  tmp_path)  # fmt: skip
    (pid, cmd), *_ = wait_for(lambda: engine_processes(marker, perfci.pid, SIM), timeout_s=60, what="the engine")
    wait_for(lambda: port_in_use(sim_port(cmd)), timeout_s=30, what="the engine's port")
    time.sleep(5.0)  # points of 2 s each: the first two are done, the third is under way
    perfci.send_signal(signal.SIGTERM)
    _, err = perfci.communicate(timeout=60)
    assert perfci.returncode == EXIT_SIGNAL_BASE + signal.SIGTERM, err
    assert left_over(marker, timeout_s=5) == []
    (record,) = records_in(tmp_path / "runs")
    statuses = [p["status"] for p in record["points"]]
    assert record["status"] == "interrupted" and len(statuses) == 5
    assert statuses[0] == "ok" and "skipped" in statuses and statuses[-1] == "skipped", statuses
    ok = [p for p in record["points"] if p["status"] == "ok"]
    assert all(p["metrics"]["completed"] > 0 for p in ok)
    db = open_db(tmp_path / "p.db")
    assert db.execute("SELECT count(*) FROM points WHERE status = 'ok'").fetchone()[0] == len(ok)


def test_kill_9_of_perfci_leaves_no_engine_process(tmp_path, monkeypatch):
    """Nothing of perfci runs after SIGKILL: the engine's watchdog sees perfci's pipe close and stops the
    engine's whole process group. The temp dir it left is removed by the next run, not a live run's."""
    perfci, marker = run_sim(tmp_path, startup_s=0.2)
    (pid, cmd), *_ = wait_for(lambda: engine_processes(marker, perfci.pid, SIM), timeout_s=60, what="the engine")
    wait_for(lambda: port_in_use(sim_port(cmd)), timeout_s=30, what="the engine's port")
    time.sleep(1.0)
    perfci.kill()
    perfci.communicate(timeout=30)
    assert perfci.returncode == -signal.SIGKILL
    assert left_over(marker, timeout_s=15) == []
    assert not port_in_use(sim_port(cmd))
    (left,) = temp_dirs(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    with ExitStack() as live, ExitStack() as later:
        mine = runner._temp_workdir(live)
        runner._temp_workdir(later)
        assert left not in temp_dirs(tmp_path) and mine.name in temp_dirs(tmp_path)
    assert temp_dirs(tmp_path) == []
