"""SGLang: `python -m sglang.launch_server`. Ready is `/health` 200 (after its own warmup request it logs
"The server is fired up and ready to roll!", kept as a mark)."""

from __future__ import annotations

from typing import ClassVar

from perfci.config import TINY_MODEL
from perfci.measure.caches import Cache
from perfci.measure.engines.base import Adapter, Launch, LaunchContext, cache_root
from perfci.measure.startup import duration, mark


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
        # The 2026 summary line: "Engine startup timings (s): load_weight=12.02, kv_cache_allocation=…"
        duration("kv_cache_allocation", r"startup timings.*?kv_cache_allocation=([\d.]+)"),
        duration("scheduler_e2e", r"startup timings.*?scheduler_e2e=([\d.]+)"),
        mark("kv_cache", r"KV Cache is allocated"),
        mark("server_up", r"Uvicorn running on|Application startup complete"),
        mark("fired_up", r"The server is fired up and ready to roll"),
    )
    # scheduler_e2e spans weights, KV cache and graph capture in the scheduler process.
    additive_phases: ClassVar = (("scheduler_e2e", "weights"),)

    def launch(self, ctx: LaunchContext) -> Launch:
        m = ctx.model
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
        return Launch(argv=[*argv, *m.engine_args.get(self.name, [])], served_model=m.name, env=env)

    def caches(self, ctx: LaunchContext) -> list[Cache]:
        # Only --enable-torch-compile fills the inductor (and on a GPU the Triton) cache; SGLang's own directory
        # holds JIT kernels some configurations build.
        root, compiled = ctx.compile_cache, bool(ctx.model.torch_compile)
        return [Cache("inductor", root / "inductor", decides=compiled),
                Cache("triton", root / "triton", decides=compiled and ctx.on_gpu),
                Cache("sglang", root / "sglang", decides=False)]  # fmt: skip
