"""SGLang on a machine without a GPU: the CPU engine, a KV cache bounded by the suite, perfci's stand-in for the
kernel package declared, and startup phases from SGLang's own summary line in a real CPU log."""

import sys
from pathlib import Path

import pytest

from perfci.config import Model, Suite, load_suite
from perfci.measure import engines, startup
from perfci.measure.engines import sglang
from perfci.measure.engines.base import LaunchContext

LOG = Path(__file__).parents[1] / "fixtures" / "startup-logs" / "sglang-0.5.23-cpu.log"


def ctx(tmp_path, *, on_gpu=False, suite=None, **model) -> LaunchContext:
    return LaunchContext(python="/no/such/env/bin/python", model=Model(name="m", **model), model_path="/models/m",
                         port=8123, suite=suite or load_suite("smoke"), cache="warm", compile_cache=tmp_path / "cc",
                         workdir=tmp_path, on_gpu=on_gpu)  # fmt: skip


def suite_with(load: dict, *, prompt=1000, output=200, max_model_len: int | None = 4096) -> Suite:
    return Suite.model_validate({
        "name": "s", "models": [{"name": "m", "source": "org/m", "max_model_len": max_model_len}],
        "workloads": [{"name": "w", "prompt_tokens": prompt, "output_tokens": output, "load": load}],
    })  # fmt: skip


def test_on_a_cpu_the_cpu_engine_a_bounded_kv_cache_and_the_declared_stand_in(tmp_path):
    launch = engines.get("sglang").launch(ctx(tmp_path, max_model_len=2048))
    a, env = launch.argv, launch.env
    assert env["SGLANG_USE_CPU_ENGINE"] == "1" and a[a.index("--device") + 1] == "cpu"
    assert a[a.index("--max-total-tokens") + 1] == str(sglang.MIN_KV_TOKENS)  # smoke: 80 tokens x 64 in flight
    standins = Path(env["PYTHONPATH"].split(":")[0])
    assert (standins / "sgl_kernel" / "__init__.py").is_file() and not (standins / "perfci").exists()
    assert launch.kernels == sglang.KERNELS_STAND_IN == "perfci CPU stand-in for sgl_kernel"


def test_on_a_gpu_nothing_of_the_cpu_path_applies(tmp_path):
    launch = engines.get("sglang").launch(ctx(tmp_path, on_gpu=True))
    assert "SGLANG_USE_CPU_ENGINE" not in launch.env and "PYTHONPATH" not in launch.env
    assert "--device" not in launch.argv and "--max-total-tokens" not in launch.argv and launch.kernels is None


def test_the_suites_own_engine_args_win_over_the_cpu_defaults(tmp_path):
    args = {"sglang": ["--max-total-tokens=4096", "--device", "cpu"]}
    a = engines.get("sglang").launch(ctx(tmp_path, engine_args=args)).argv
    assert a.count("--device") == 1 and not any(x == "--max-total-tokens" for x in a)
    assert a[-3:] == ["--max-total-tokens=4096", "--device", "cpu"]


@pytest.mark.parametrize(("load", "tokens"), [
    ({"concurrency": [4, 64]}, 1200 * 64),  # the longest request times the most streams
    ({"synchronous": True}, sglang.MIN_KV_TOKENS),  # one request: the floor
    ({"rate": [2.0]}, 1200 * sglang.RATE_IN_FLIGHT),  # uncapped rate: SGLang queues beyond the bound
    ({"rate": [2.0], "max_concurrency": 100}, 1200 * 100),
    ({"sweep": 3, "throughput_concurrency": 32}, 1200 * 64),  # a sweep's rates are uncapped too
])  # fmt: skip
def test_kv_cache_bound_is_the_longest_request_times_the_most_in_flight(load, tokens):
    suite = suite_with(load)
    assert sglang.kv_tokens(suite, suite.models[0]) == tokens


def test_kv_cache_bound_fits_a_full_context_and_unbounded_lengths():
    suite = suite_with({"concurrency": [2]}, prompt=10, output=10, max_model_len=32768)
    assert sglang.kv_tokens(suite, suite.models[0]) == 32768  # one request of the full context fits
    drawn = suite_with({"concurrency": [8]}, prompt={"dist": "normal", "mean": 100, "std": 10}, max_model_len=None)
    assert sglang.kv_tokens(drawn, drawn.models[0]) == sglang.MIN_KV_TOKENS * 8  # no max, no context length


@pytest.mark.integration  # runs the probe in another interpreter
def test_an_interpreter_without_the_kernel_package_gets_the_stand_in():
    assert sglang.cpu_kernels_importable(sys.executable) is False  # perfci's own venv has neither torch nor it
    assert sglang.cpu_kernels_importable("/no/such/python") is False


def test_startup_phases_from_sglangs_summary_line_in_a_real_cpu_log():
    lines = [(float(i), line) for i, line in enumerate(LOG.read_text().splitlines())]
    adapter = engines.get("sglang")
    parsed = startup.parse(lines, adapter.patterns)
    p = startup.finish(parsed, additive=adapter.additive_phases, ready_s=53.0, first_token_s=0.5)
    assert (p["load_weight"], p["kv_cache_allocation"], p["scheduler_e2e"], p["tokenizer_e2e"]) == (
        0.02, 22.71, 26.46, 49.78)  # fmt: skip
    assert p["cuda_graph_decode"] == 0.0 and p["cuda_graph_prefill"] == 0.0  # no graphs on a CPU
    assert p["weights"] == 0.02  # "Load weight end. elapsed=0.02 s": dummy weights
    order = ["at_scheduler_init", "at_weights_loaded", "at_kv_cache", "at_server_up", "at_fired_up"]
    assert all(k in p for k in order) and [p[k] for k in order] == sorted(p[k] for k in order), p
    # scheduler_e2e (weights + KV cache + graphs) is the reported part; the rest is imports and spawning.
    assert p["unreported"] == pytest.approx(53.0 - 26.46) and p["first_token"] == 0.5
