"""A real SGLang (0.5.23 from PyPI, its CPU engine, perfci's tiny model with dummy weights) installed through
perfci's own env manager. Marked `sglang` and run by `make test` / CI. One engine start serves the smoke-suite
tests (its last point kills the engine), two more the startup suite; each start is ~1-2 minutes on 2 cores."""

import json
import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from perfci.config import Model, load_suite
from perfci.measure import engines, envs, runner
from perfci.measure.engines import sglang
from perfci.measure.engines.base import LaunchContext
from perfci.report import dashboard
from perfci.store import ingest, open_db, points_frame, row_counts

# The startup suite's two starts took 18 minutes on 2 cores at a load average of 20 (~2 idle).
pytestmark = [pytest.mark.sglang, pytest.mark.timeout(2400)]
BUILD = "sglang==0.5.23"


@pytest.fixture(scope="module")
def sglang_env():
    return envs.ensure_env(envs.parse_build(BUILD), post_install=engines.get("sglang").post_install)


def descendants() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]


def in_env(env, script: str, *args: str, **environ: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(env.python), "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **environ})  # fmt: skip


def test_pypis_kernel_package_has_no_cpu_build_so_the_stand_in_is_used(sglang_env):
    assert sglang_env.meta["installed"]["sglang"] == "0.5.23"
    assert sglang.cpu_kernels_importable(str(sglang_env.python)) is False  # CUDA wheels only: libcuda missing


def test_stand_in_assigns_token_slots_as_sglangs_kernel_does_and_names_any_other_op(sglang_env):
    """Against SGLang's own reference semantics (its Triton kernel, written out in Python), with the stand-in
    imported by SGLang's own interpreter exactly as the engine imports it."""
    script = """
        import torch, sgl_kernel
        assert sgl_kernel.STAND_IN
        pool = torch.full((4, 16), -1, dtype=torch.int32)
        rows, start, end = torch.tensor([2, 0, 3]), torch.tensor([0, 5, 3]), torch.tensor([4, 7, 3])
        out = torch.arange(100, 106, dtype=torch.int64)  # 4 + 2 + 0 slots, in request order
        sgl_kernel.assign_req_to_token_pool_cpu(rows, pool, start, end, out, pool.shape[1])
        assert pool[2, :4].tolist() == [100, 101, 102, 103] and pool[0, 5:7].tolist() == [104, 105]
        assert (pool == -1).sum() == 64 - 6 and pool.dtype == torch.int32
        assert not hasattr(torch.ops.sgl_kernel, "convert_weight_packed")  # SGLang's AMX backend stays off
        from sgl_kernel import copy_all_layer_kv_cache_cpu  # imported by SGLang's CPU path, never called
        try:
            copy_all_layer_kv_cache_cpu(None, None, None, None)
        except NotImplementedError as e:
            print(e)
    """
    done = in_env(sglang_env, script, PYTHONPATH=str(sglang.STANDINS))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sgl_kernel.copy_all_layer_kv_cache_cpu was called" in done.stdout
    assert "implements only assign_req_to_token_pool_cpu" in done.stdout


def test_generated_argv_parses_with_sglangs_own_parser(sglang_env, tmp_path):
    """A flag renamed or removed upstream fails here, not minutes into a run."""
    model = Model(name="m", max_model_len=2048, cuda_graphs=False, dtype="bfloat16",
                  engine_args={"sglang": ["--random-seed", "3"]})  # fmt: skip
    ctx = LaunchContext(python=str(sglang_env.python), model=model, model_path="/models/m", port=8000,
                        suite=load_suite("smoke"), cache="warm", compile_cache=tmp_path, workdir=tmp_path, on_gpu=False)  # fmt: skip
    argv = engines.get("sglang").launch(ctx).argv
    script = """
        import argparse, json, sys
        from sglang.srt.server_args import ServerArgs
        parser = argparse.ArgumentParser()
        ServerArgs.add_cli_args(parser)
        a = parser.parse_args(json.loads(sys.argv[1]))
        print(json.dumps({k: getattr(a, k) for k in ("model_path", "served_model_name", "context_length", "device",
                          "max_total_tokens", "disable_cuda_graph", "dtype", "random_seed", "tp_size")}))
    """
    done = in_env(sglang_env, script, json.dumps(argv[3:]))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "model_path": "/models/m", "served_model_name": "m", "context_length": 2048, "device": "cpu",
        "max_total_tokens": sglang.MIN_KV_TOKENS, "disable_cuda_graph": True, "dtype": "bfloat16", "random_seed": 3,
        "tp_size": 1,
    }  # fmt: skip


@pytest.fixture(scope="module")
def smoke_run(sglang_env, tmp_path_factory):
    """One start for the smoke-suite tests: real numbers for three points, then `kill -9` of SGLang's server
    process as the fourth point starts."""

    class KillInLastPoint(runner.SilentReporter):
        def point_started(self, index, total, plan, n_requests):
            if index == total - 1:
                server = next(p for p in descendants() if "sglang.launch_server" in " ".join(p.cmdline()))
                os.kill(server.pid, 9)

    record = runner.run_suite(suite=load_suite("smoke"), target=runner.resolve_target(engine=BUILD),
                              reporter=KillInLastPoint())  # fmt: skip
    leftover = descendants()
    db_path = tmp_path_factory.mktemp("sglang-smoke") / "perfci.db"
    ingest(open_db(db_path), record)
    return record, leftover, db_path


def test_smoke_suite_on_real_sglang_gives_exact_token_counts(smoke_run):
    record, _, _ = smoke_run
    assert record.build.engine == "sglang" and record.build.version == "0.5.23"
    assert record.build.kernels == "perfci CPU stand-in for sgl_kernel"  # declared, never silent
    argv = record.engine_argv
    assert argv[argv.index("--device") + 1] == "cpu" and argv[argv.index("--max-total-tokens") + 1] == "16384"
    ok = record.points[:3]
    assert [p.status for p in ok] == ["ok", "ok", "ok"], [p.error for p in ok]
    for p in ok:
        assert p.metrics["completed"] == 12 and p.metrics["output_tokens_mean"] == 16  # ignore_eos: exact lengths
        assert p.metrics["prompt_tokens_mean"] == 64  # the tiny model's tokenizer: exact prompt lengths
        assert 0 < p.metrics["ttft_ms"]["p50"] <= p.metrics["e2e_ms"]["p50"]


def test_smoke_start_is_broken_into_sglangs_own_phases(smoke_run):
    record, _, _ = smoke_run
    (start,) = record.startups  # nothing SGLang keeps decides a warm start: no priming start
    assert start.cache == "warm" and start.ready and start.total_s > 5
    p = start.phases
    assert p["scheduler_e2e"] > p["kv_cache_allocation"] >= 0 and p["load_weight"] >= 0 and p["tokenizer_e2e"] > 0
    assert 0 < p["at_scheduler_init"] < p["at_kv_cache"] < p["at_server_up"] <= p["at_health_ok"] == start.total_s
    assert p["unreported"] == pytest.approx(start.total_s - p["scheduler_e2e"], abs=1e-3)


def test_killed_sglang_fails_its_point_and_leaves_no_process(smoke_run):
    record, leftover, _ = smoke_run
    last = record.points[3]
    assert last.status == "failed" and "engine exited during the point" in last.error
    assert record.status == "degraded" and record.log_tail
    assert leftover == []  # the scheduler and detokenizer processes of the killed server are gone too


def test_stored_sglang_run_shows_its_kernels_on_the_dashboard(smoke_run, tmp_path):
    record, _, db_path = smoke_run
    db = open_db(db_path)
    frame = points_frame(db)
    assert (frame["status"] == "ok").sum() == 3 and (frame["ttft_ms_p50"] > 0).sum() == 3
    assert row_counts(db)["startup_phases"] >= 8
    assert db.execute("SELECT kernels FROM runs").fetchall() == [("perfci CPU stand-in for sgl_kernel",)]
    dashboard.build_site(db, tmp_path / "site", costs=dashboard.load_costs())
    page = (tmp_path / "site" / "runs" / f"{record.run_id}.html").read_text()
    assert "perfci CPU stand-in for sgl_kernel" in page
    assert "perfci CPU stand-in for sgl_kernel" in (tmp_path / "site" / "engines.html").read_text()


def test_startup_suite_stores_sglangs_phases_for_a_cold_and_a_warm_start(sglang_env, tmp_path):
    """`perfci run --suite startup --engine sglang==0.5.23`, as a user runs it. By default SGLang compiles
    nothing it keeps, so no cache decides the label: each start is what the suite asked for, and a cold one
    empties the directories SGLang was pointed at."""
    done = subprocess.run([sys.executable, "-m", "perfci", "run", "--suite", "startup", "--engine", BUILD,
                           "--db", "s.db", "--out", "runs", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=1400)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    assert record["build"]["kernels"] == "perfci CPU stand-in for sgl_kernel"
    cold, warm = record["startups"]
    assert (cold["cache"], cold["requested"], warm["cache"], warm["requested"]) == ("cold", "cold", "warm", "warm")
    assert not any(c["decides"] for s in record["startups"] for c in s["caches"].values())
    for s in record["startups"]:
        assert s["ready"] and s["phases"]["first_token"] > 0 and s["phases"]["scheduler_e2e"] > 0, s["phases"]
    db = open_db(tmp_path / "s.db", readonly=True)
    stored = db.execute("SELECT s.cache, ph.phase FROM startup_phases ph JOIN startups s ON s.id = ph.startup_id "
                        "WHERE ph.phase IN ('kv_cache_allocation', 'scheduler_e2e')").fetchall()  # fmt: skip
    assert sorted(stored) == [("cold", "kv_cache_allocation"), ("cold", "scheduler_e2e"),
                              ("warm", "kv_cache_allocation"), ("warm", "scheduler_e2e")]  # fmt: skip
