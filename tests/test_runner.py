"""run_suite end to end on the sim engine (a real subprocess over real HTTP), including its faults."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from perfci import config
from perfci.config import load_suite
from perfci.errors import ConfigError
from perfci.measure import runner
from perfci.measure.engines.base import Adapter, Launch
from perfci.measure.server import free_port, port_in_use

SUITE = """
name = "t"
[[models]]
name = "m"
{model_extra}
[[workloads]]
name = "w"
prompt_tokens = 16
output_tokens = 8
load = {load}
[run]
{run}
[startup]
caches = {caches}
[slo]
ttft_ms = 1000
[sim]
startup_s = 0.1
{sim}
"""


def suite(tmp_path: Path, *, load="{ concurrency = [2] }", run="requests = 6\nwarmup_requests = 1",
          caches='["cold"]', sim="decode_ms_per_token = 2", model_extra=""):  # fmt: skip
    p = tmp_path / "t.toml"
    p.write_text(SUITE.format(load=load, run=run, caches=caches, sim=sim, model_extra=model_extra))
    return load_suite(p)


def sim_target():
    return runner.resolve_target(engine="sim")


def simulators() -> list[psutil.Process]:
    me = psutil.Process()
    return [p for p in me.children(recursive=True) if "perfci.measure.simulator" in " ".join(p.cmdline())]


def test_ok_run_has_startup_points_and_requests(tmp_path):
    record = runner.run_suite(suite=suite(tmp_path), target=sim_target())
    assert record.status == "ok" and record.error is None
    assert record.build.engine == "sim" and record.build.source == "builtin"
    (start,) = record.startups
    assert start.ready and start.total_s > 0.1
    assert {"load_weights", "compile", "warmup", "at_server_up", "at_health_ok", "unreported", "first_token"} <= set(start.phases)
    (point,) = record.points
    assert point.status == "ok" and point.load_label == "c=2"
    assert point.metrics["completed"] == 6 and point.metrics["output_tokens_mean"] == 8
    assert point.metrics["ttft_ms"]["p50"] > 0 and point.metrics["goodput"] > 0
    assert len(point.requests.ttft_ms) == 6
    assert point.telemetry["samples"] >= 0
    assert simulators() == []  # torn down


def test_sweep_resolves_rates_between_sync_and_throughput(tmp_path):
    s = suite(tmp_path, load="{ sweep = 2, throughput_concurrency = 8 }", run="requests = 8\nwarmup_requests = 0")
    record = runner.run_suite(suite=s, target=sim_target())
    kinds = [(p.load.kind, p.load.value) for p in record.points]
    assert [k for k, _ in kinds] == ["synchronous", "throughput", "rate", "rate"]
    sync_rate, thr_rate = (p.metrics["request_rate"] for p in record.points[:2])
    r1, r2 = kinds[2][1], kinds[3][1]
    assert sync_rate < r1 < r2 < thr_rate
    assert r1 - sync_rate == pytest.approx((thr_rate - sync_rate) / 3, rel=1e-6)


def test_cold_and_warm_starts_are_recorded(tmp_path):
    record = runner.run_suite(suite=suite(tmp_path, caches='["cold", "warm"]'), target=sim_target())
    # The cold start filled the caches, so the warm one needs no priming.
    assert [(s.cache, s.requested) for s in record.startups] == [("cold", "cold"), ("warm", "warm")]
    assert all(s.ready for s in record.startups)


def test_injected_errors_fail_points_but_the_record_is_complete(tmp_path):
    record = runner.run_suite(suite=suite(tmp_path, sim="error_rate = 1.0"), target=sim_target())
    (point,) = record.points
    assert point.status == "failed" and "500" in point.error
    assert point.metrics["errors"] == 6 and point.requests.status == [500] * 6
    assert point.metrics["errors_by_kind"] == {"http_5xx": 6} and point.requests.error_kind == ["http_5xx"] * 6
    assert record.status == "failed"  # the start was measured, but no point was
    assert record.startups[0].ready


def test_streams_cut_short_make_the_point_degraded_never_ok(tmp_path):
    """The sim engine cuts half its streams mid-response: those requests count as stream_cut errors, the
    point is degraded (not a faster clean point), and the run is not ok."""
    s = suite(tmp_path, run="requests = 12\nwarmup_requests = 0", sim="drop_rate = 0.3\nseed = 3")
    record = runner.run_suite(suite=s, target=sim_target())
    (point,) = record.points
    cut = point.metrics["errors_by_kind"].get("stream_cut", 0)
    assert 0 < cut == point.metrics["errors"] <= 6  # seeded: some but not most
    assert point.status == "degraded" and "stream_cut" in point.error
    assert point.requests.error_kind.count("stream_cut") == cut
    assert record.status == "degraded"


def test_max_error_rate_tolerates_a_few_failed_requests(tmp_path):
    s = suite(tmp_path, run="requests = 12\nwarmup_requests = 0\nmax_error_rate = 0.5", sim="malformed_rate = 0.2")
    record = runner.run_suite(suite=s, target=sim_target())
    (point,) = record.points
    assert 0 < point.metrics["errors_by_kind"]["bad_sse"] <= 6
    assert point.status == "ok" and record.status == "ok"


def test_the_run_deadline_skips_what_is_left_and_the_record_says_why(tmp_path):
    s = suite(tmp_path, load="{ concurrency = [1, 2, 4] }", run="duration_s = 1.5\nwarmup_requests = 0\n"
              "max_duration_s = 2", sim="decode_ms_per_token = 5")  # fmt: skip
    # 3 points of 1.5 s do not fit in 2 s: however long the start takes, the second point ends at the deadline
    # at the earliest (cut short, or skipped), so the third is always skipped.
    record = runner.run_suite(suite=s, target=sim_target())
    statuses = [p.status for p in record.points]
    assert statuses[-1] == "skipped" and record.points[-1].error == "run deadline reached (run.max_duration_s = 2.0)"
    assert "run deadline reached" in record.error
    assert record.status == ("degraded" if {"ok", "degraded"} & set(statuses) else "failed")


def test_engine_that_cannot_start_gives_a_failed_record_with_log_tail(tmp_path):
    s = suite(tmp_path, model_extra='engine_args = { sim = ["--no-such-flag"] }')
    record = runner.run_suite(suite=s, target=sim_target())
    assert record.status == "failed"
    assert "exited with code 2" in record.error and "--no-such-flag" in record.log_tail
    assert [p.status for p in record.points] == ["skipped"]
    assert not record.startups[0].ready


def test_engine_killed_mid_point(tmp_path):
    """kill -9 of the engine during the second point: the first point is kept, the second fails with the
    error, the third is skipped, the record is written, and nothing is left running."""
    s = suite(tmp_path, load="{ concurrency = [1, 2, 4] }", run="duration_s = 3\nwarmup_requests = 0",
              sim="decode_ms_per_token = 20")  # fmt: skip

    class KillOnSecondPoint(runner.SilentReporter):
        def point_started(self, index, total, plan, n_requests):
            if index == 1:
                threading.Timer(1.0, lambda: [p.kill() for p in simulators()]).start()

    record = runner.run_suite(suite=s, target=sim_target(), reporter=KillOnSecondPoint())
    assert [p.status for p in record.points] == ["ok", "failed", "skipped"]
    assert "engine exited during the point" in record.points[1].error
    assert record.points[1].metrics["errors"] >= 1
    assert record.status == "degraded"
    assert simulators() == []


def test_endpoint_mode_measures_a_running_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "perfci.measure.simulator", "--port", str(port), "--model", "served-name",
                             "--config", '{"startup_s": 0}'], stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not port_in_use(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Credentials in the URL are sent (as basic auth) but never stored.
        endpoint = f"http://bench:pw123@127.0.0.1:{port}"
        target = runner.resolve_target(engine=None, endpoint=endpoint, served_model="served-name")
        record = runner.run_suite(suite=suite(tmp_path), target=target)
    finally:
        proc.terminate()
        proc.wait(10)
    assert record.status == "ok" and record.startups == []
    assert record.build.engine == "openai" and record.build.source == f"endpoint:http://127.0.0.1:{port}"
    assert "pw123" not in record.model_dump_json()
    assert record.points[0].metrics["completed"] == 6


def test_the_record_holds_no_home_or_checkout_path(tmp_path, monkeypatch):
    """A run started from a checkout in the home directory: the record names the suite by its path relative
    to the working directory, and perfci's argv without where perfci is installed or whose home it is."""
    home, checkout = tmp_path / "home", tmp_path / "home" / "src" / "perfci"
    checkout.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(checkout)
    monkeypatch.setattr(sys, "argv", [str(checkout / ".venv/bin/perfci"), "run", "--suite", str(checkout / "t.toml"),
                                      "--db", str(home / "perfci.db"), "--out", str(checkout / "runs")])  # fmt: skip
    record = runner.run_suite(suite=suite(checkout), target=sim_target())
    assert record.status == "ok"
    assert record.suite.path == "t.toml"
    assert record.environment["perfci_argv"] == ["perfci", "run", "--suite", "t.toml", "--db", "~/perfci.db",
                                                 "--out", "runs"]  # fmt: skip
    assert str(tmp_path) not in record.model_dump_json()


def test_a_shipped_suite_is_recorded_by_name_and_hash_only(tmp_path, monkeypatch):
    # where perfci's own suites are installed
    monkeypatch.setattr(config, "shipped", lambda name: tmp_path.resolve() if name == "suites" else None)
    s = suite(tmp_path, load="{ synchronous = true }", run="requests = 2\nwarmup_requests = 0")
    record = runner.run_suite(suite=s, target=sim_target())
    assert (record.suite.name, record.suite.hash, record.suite.path) == ("t", s.content_hash, None)


def test_target_errors():
    with pytest.raises(ConfigError, match="--endpoint needs --model"):
        runner.resolve_target(engine=None, endpoint="http://x", served_model=None)
    with pytest.raises(ConfigError, match="give --engine"):
        runner.resolve_target(engine=None)
    with pytest.raises(ConfigError, match="bad build"):
        runner.resolve_target(engine="vllm")


def test_dirty_gpu_is_refused_unless_forced(tmp_path, monkeypatch):
    from perfci.errors import HardwareError
    from perfci.measure import hardware

    monkeypatch.setattr(hardware, "preflight", lambda: hardware.Preflight(["GPU 0: 2 process(es) running: [1, 2]"]))
    with pytest.raises(HardwareError, match="GPU 0: 2 process"):
        runner.run_suite(suite=suite(tmp_path), target=sim_target())
    assert runner.run_suite(suite=suite(tmp_path), target=sim_target(), force=True).status == "ok"


def test_signal_during_engine_startup_stops_the_engine_no_one_held_yet(tmp_path):
    """SIGTERM while `_start` waits for readiness: the engine exists only inside `_start`, and is stopped
    all the same; the record says where the run was stopped and Interrupted carries it."""
    import os
    import signal

    from perfci.errors import Interrupted
    from perfci.interrupt import interruptible

    s = suite(tmp_path)
    s = s.model_copy(update={"sim": s.sim.model_copy(update={"startup_s": 20.0})})
    threading.Thread(target=lambda: (wait_for_simulator(), os.kill(os.getpid(), signal.SIGTERM)), daemon=True).start()
    with pytest.raises(Interrupted) as stopped, interruptible():
        runner.run_suite(suite=s, target=sim_target())
    assert stopped.value.signum == signal.SIGTERM and stopped.value.exit_code == 143
    record = stopped.value.record
    assert record.status == "interrupted" and "SIGTERM" in record.startups[0].error
    assert [p.status for p in record.points] == ["skipped"]
    assert simulators() == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_keyboard_interrupt_in_a_later_point_keeps_the_finished_ones(tmp_path):
    from perfci.errors import Interrupted

    class CtrlCOnSecondPoint(runner.SilentReporter):
        def point_started(self, index, total, plan, n_requests):
            if index == 1:
                raise KeyboardInterrupt

    s = suite(tmp_path, load="{ concurrency = [1, 2, 4] }")
    with pytest.raises(Interrupted) as stopped:
        runner.run_suite(suite=s, target=sim_target(), reporter=CtrlCOnSecondPoint())
    record = stopped.value.record
    assert stopped.value.exit_code == 130
    assert [p.status for p in record.points] == ["ok", "skipped", "skipped"]
    assert record.points[1].error == "run interrupted by SIGINT"
    assert simulators() == []


def wait_for_simulator() -> None:
    deadline = time.monotonic() + 60
    while not simulators() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)


class VanishingEngine(Adapter):
    """tests/fake_engine.py in `vanish` mode: the first request makes it stop listening and exit a second
    later, so every request fails to connect while the process is still there."""

    name = "vanishing"

    def launch(self, ctx):
        fake = str(Path(__file__).with_name("fake_engine.py"))
        return Launch(argv=[sys.executable, fake, "vanish", str(ctx.port)], served_model="m")


def test_requests_refused_by_a_dying_engine_are_blamed_on_its_exit(tmp_path):
    """The engine's sockets close before its exit can be seen: one look at the process right after the point
    blamed the requests ('connection closed', 'connection failed'); the runner waits for the exit."""
    s = suite(tmp_path, caches='["warm"]\nfirst_request = false', run="requests = 6\nwarmup_requests = 0",
              model_extra=f'source = "{tmp_path}"')  # fmt: skip
    record = runner.run_suite(suite=s, target=runner.Target(engine=VanishingEngine()))
    (point,) = record.points
    assert point.status == "failed" and "engine exited during the point" in point.error, point.error
