"""SGLang: `python -m sglang.launch_server`. Ready is `/health` 200 (after its own warmup request it logs
"The server is fired up and ready to roll!", kept as a mark).

On a machine without a GPU the adapter starts SGLang's CPU engine (`SGLANG_USE_CPU_ENGINE=1`, `--device cpu`),
bounds its KV cache to what the suite needs (by default SGLang takes most of the host's memory for it), and,
when no CPU build of SGLang's kernel package is importable in the build's env, puts perfci's stand-in for it
(perfci/measure/engines/standins/sgl_kernel) on the engine's path and declares it in the run record. On a GPU none of
this applies."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import ClassVar

from perfci.config import TINY_MODEL, Model, Suite, largest
from perfci.measure.caches import Cache
from perfci.measure.engines.base import Adapter, Launch, LaunchContext, cache_root
from perfci.measure.startup import duration, mark

STANDINS = Path(__file__).parent / "standins"
# What the run record and every page that shows the run say when the stand-in served it.
KERNELS_STAND_IN = "perfci CPU stand-in for sgl_kernel"
# A real CPU build registers its ops under torch.ops.sgl_kernel; the stand-in registers none and says so.
_PROBE = """\
import sys
try:
    import torch, sgl_kernel
    real = not getattr(sgl_kernel, "STAND_IN", False)
    print(int(real and hasattr(torch.ops.sgl_kernel, "assign_req_to_token_pool_cpu")))
except Exception:
    print(0)
"""
# KV cache bound on a CPU: requests in flight at an uncapped rate level (beyond it SGLang queues requests,
# it does not fail them), and a floor that leaves room for SGLang's own warmup and chunked prefill.
RATE_IN_FLIGHT = 64
MIN_KV_TOKENS = 16384


class SglangEngine(Adapter):
    name: ClassVar[str] = "sglang"
    distributions: ClassVar = ("sglang",)
    git_subdirectory: ClassVar = "python"
    patterns: ClassVar = (
        duration("weights", r"Load weight end\. elapsed=([\d.]+) s"),
        mark("weights_loaded", r"Load weight end"),
        duration("graphs", r"Capture cuda graph end\. Time elapsed: ([\d.]+) s"),
        duration("graphs_decode", r"Capture (?:target )?decode CUDA graph end\. elapsed=([\d.]+) s"),
        duration("graphs_piecewise", r"Capture piecewise CUDA graph end\. elapsed=([\d.]+) s"),
        # SGLang's own summary: "Engine startup timings (s): load_weight=0.02, kv_cache_allocation=22.71,
        # scheduler_e2e=26.46, cuda_graph={prefill=0.00, decode=0.00, …}, tokenizer_e2e=49.78"
        duration("load_weight", r"startup timings.*?load_weight=([\d.]+)"),
        duration("kv_cache_allocation", r"startup timings.*?kv_cache_allocation=([\d.]+)"),
        duration("scheduler_e2e", r"startup timings.*?scheduler_e2e=([\d.]+)"),
        duration("cuda_graph_decode", r"startup timings.*?cuda_graph=\{[^}]*?\bdecode=([\d.]+)"),
        duration("cuda_graph_prefill", r"startup timings.*?cuda_graph=\{[^}]*?\bprefill=([\d.]+)"),
        duration("tokenizer_e2e", r"startup timings.*?tokenizer_e2e=([\d.]+)"),
        mark("scheduler_init", r"Init parallel begin"),
        mark("kv_cache", r"KV Cache is allocated"),
        mark("server_up", r"Uvicorn running on|Application startup complete"),
        mark("fired_up", r"The server is fired up and ready to roll"),
    )
    # scheduler_e2e spans weights, KV cache and graph capture in the scheduler process (releases before the
    # summary line log only the weights); the rest up to ready (imports, spawning the scheduler and detokenizer
    # processes, the HTTP server) is what no line reports. tokenizer_e2e overlaps all of it: kept, not added.
    additive_phases: ClassVar = (("scheduler_e2e", "weights"),)

    def launch(self, ctx: LaunchContext) -> Launch:
        m = ctx.model
        extra = m.engine_args.get(self.name, [])
        argv = [ctx.python, "-m", "sglang.launch_server", "--model-path", ctx.model_path,
                "--served-model-name", m.name, "--host", "127.0.0.1", "--port", str(ctx.port),
                "--tp-size", str(m.tensor_parallel)]  # fmt: skip
        if m.max_model_len:
            argv += ["--context-length", str(m.max_model_len)]
        if m.dtype:
            argv += ["--dtype", m.dtype]
        if m.cuda_graphs is False:
            argv += ["--disable-cuda-graph"]
        if m.torch_compile:
            argv += ["--enable-torch-compile"]  # off by default in SGLang
        if m.source == TINY_MODEL:
            argv += ["--load-format", "dummy"]
        root = cache_root(ctx)
        env = {"TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"), "TRITON_CACHE_DIR": str(root / "triton"),
               "SGLANG_CACHE_DIR": str(root / "sglang")}  # fmt: skip
        kernels = None
        if not ctx.on_gpu:
            env["SGLANG_USE_CPU_ENGINE"] = "1"
            if not _given(extra, "--device"):
                argv += ["--device", "cpu"]
            if not _given(extra, "--max-total-tokens"):
                argv += ["--max-total-tokens", str(kv_tokens(ctx.suite, m))]
            if not cpu_kernels_importable(ctx.python):
                env["PYTHONPATH"] = os.pathsep.join(p for p in (str(STANDINS), os.environ.get("PYTHONPATH")) if p)
                kernels = KERNELS_STAND_IN
        return Launch(argv=[*argv, *extra], served_model=m.name, env=env, kernels=kernels)

    def caches(self, ctx: LaunchContext) -> list[Cache]:
        # Only --enable-torch-compile fills the inductor (and on a GPU the Triton) cache; SGLang's own directory
        # holds JIT kernels some configurations build. By default nothing decides: SGLang compiles nothing at
        # start, so a start is what the suite asked for (cold empties the directories all the same).
        root, compiled = ctx.compile_cache, bool(ctx.model.torch_compile)
        return [Cache("inductor", root / "inductor", decides=compiled),
                Cache("triton", root / "triton", decides=compiled and ctx.on_gpu),
                Cache("sglang", root / "sglang", decides=False)]  # fmt: skip


def _given(args: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def kv_tokens(suite: Suite, model: Model) -> int:
    """KV cache tokens the suite's points on `model` can hold at once: the longest request (prompt + output; when
    a count is unbounded, the model's context length or MIN_KV_TOKENS) times the most requests in flight at
    any level."""
    per_request, in_flight = 0, 1
    for w in suite.workloads:
        if w.model not in (None, model.name):
            continue
        prompt, output = largest(w.prompt_tokens), largest(w.output_tokens)
        unbounded = prompt is None or output is None
        longest = (model.max_model_len or MIN_KV_TOKENS) if unbounded else prompt + output
        per_request = max(per_request, longest)
        load = w.load
        levels = [*load.concurrency, load.throughput_concurrency if load.sweep else 1]
        if load.rate or load.sweep:
            levels.append(load.max_concurrency or RATE_IN_FLIGHT)
        in_flight = max(in_flight, *levels)
    return max(per_request * in_flight, model.max_model_len or 0, MIN_KV_TOKENS)


@functools.cache
def cpu_kernels_importable(python: str) -> bool:
    """Whether `python` imports a build of SGLang's kernel package that has its CPU ops (on PyPI: CUDA only)."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        done = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=300, env=environ)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.stdout.strip().endswith("1")
