"""TensorRT-LLM: `trtllm-serve` (PyTorch backend). It logs no "took N s" lines, so its phases are marks:
when each milestone line arrived, stamped by perfci from the spawn (its own `[MM/DD/YYYY-HH:MM:SS]` stamps
are whole seconds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from perfci.measure.caches import Cache
from perfci.measure.engines.base import Adapter, Launch, LaunchContext, cache_root
from perfci.measure.startup import mark


class TrtllmEngine(Adapter):
    name: ClassVar[str] = "trtllm"
    distributions: ClassVar = ("tensorrt-llm", "tensorrt_llm")
    patterns: ClassVar = (
        mark("engine_init", r"TensorRT-LLM version|Starting TensorRT-LLM"),
        mark("weights_loaded", r"(?:weights|model) (?:are |is )?loaded|Loading weights.*(?:done|100%)"),
        mark("kv_cache", r"(?:max_tokens|KV cache|kv_cache).*(?:estimat|allocat)"),
        mark("graphs", r"CUDA graph.*(?:warmup|captur).*(?:done|finish|complete)"),
        mark("server_up", r"Uvicorn running on|Application startup complete"),
    )
    additive_phases: ClassVar = ()

    def launch(self, ctx: LaunchContext) -> Launch:
        m = ctx.model
        trtllm_serve = str(Path(ctx.python).with_name("trtllm-serve"))
        argv = [trtllm_serve, ctx.model_path, "--host", "127.0.0.1", "--port", str(ctx.port),
                "--backend", "pytorch", "--tp_size", str(m.tensor_parallel)]  # fmt: skip
        if m.max_model_len:
            argv += ["--max_seq_len", str(m.max_model_len)]
        options: dict[str, Any] = {}
        if m.cuda_graphs is False:
            options["cuda_graph_config"] = None
        if m.torch_compile is not None:
            options["torch_compile_config"] = {} if m.torch_compile else None
        if options:
            # trtllm-serve takes these as a YAML file; JSON is valid YAML.
            path = ctx.workdir / "extra_llm_api_options.yaml"
            path.write_text(json.dumps(options))
            argv += ["--extra_llm_api_options", str(path)]
        root = cache_root(ctx)
        env = {"TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"), "TRITON_CACHE_DIR": str(root / "triton")}
        # trtllm-serve serves the model under the path or id it was given.
        return Launch(argv=[*argv, *m.engine_args.get(self.name, [])], served_model=ctx.model_path, env=env)

    def caches(self, ctx: LaunchContext) -> list[Cache]:
        # The PyTorch backend builds no TensorRT engine files; torch.compile, when asked for, fills these.
        root, compiled = ctx.compile_cache, bool(ctx.model.torch_compile)
        return [Cache("inductor", root / "inductor", decides=compiled),
                Cache("triton", root / "triton", decides=compiled and ctx.on_gpu)]
