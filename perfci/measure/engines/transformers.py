"""Hugging Face transformers: `transformers serve MODEL --continuous-batching` — the engine for a GPU
machine where PyTorch and transformers are preinstalled and no serving engine can be downloaded
(runners/gpu-smoke.sh). It rejects `ignore_eos`
(HTTP 422), so output lengths are whatever the model generates up to max_tokens; the tokens received are
what perfci counts. It cannot load a model without weights, so perfci's tiny model gets random weights
written once, by the engine's own interpreter."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, ClassVar

from perfci.config import TINY_MODEL
from perfci.errors import EngineError
from perfci.measure.caches import Cache
from perfci.measure.engines.base import Adapter, Launch, LaunchContext, cache_root
from perfci.measure.startup import mark

WRITE_WEIGHTS = """\
import sys, torch
from transformers import AutoConfig, AutoModelForCausalLM
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(sys.argv[1]), dtype=torch.bfloat16)
model.save_pretrained(sys.argv[1])
"""


class TransformersEngine(Adapter):
    name: ClassVar[str] = "transformers"
    distributions: ClassVar = ("transformers",)
    patterns: ClassVar = (mark("server_up", r"Uvicorn running on|Application startup complete"),)
    additive_phases: ClassVar = ()

    def launch(self, ctx: LaunchContext) -> Launch:
        m = ctx.model
        model_path = with_random_weights(ctx.python, Path(ctx.model_path)) if m.source == TINY_MODEL else ctx.model_path
        transformers_cli = str(Path(ctx.python).with_name("transformers"))
        argv = [transformers_cli, "serve", model_path, "--continuous-batching", "--host", "127.0.0.1",
                "--port", str(ctx.port), "--log-level", "info",
                "--device", "cuda:0" if ctx.on_gpu else "cpu"]  # fmt: skip
        if m.dtype:
            argv += ["--dtype", m.dtype]
        if m.torch_compile:
            argv += ["--compile"]
        if m.cuda_graphs is not None:
            argv += ["--cb-use-cuda-graph" if m.cuda_graphs else "--no-cb-use-cuda-graph"]
        root = cache_root(ctx)
        env = {"TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"), "TRITON_CACHE_DIR": str(root / "triton")}
        return Launch(argv=[*argv, *m.engine_args.get(self.name, [])], served_model=model_path, env=env)

    def caches(self, ctx: LaunchContext) -> list[Cache]:
        root, compiled = ctx.compile_cache, bool(ctx.model.torch_compile)  # only --compile fills them
        return [Cache("inductor", root / "inductor", decides=compiled),
                Cache("triton", root / "triton", decides=compiled and ctx.on_gpu)]

    def request_extras(self) -> dict[str, Any]:
        return {}  # it answers ignore_eos with HTTP 422


def with_random_weights(python: str, model_dir: Path) -> str:
    """A copy of a weightless model directory with seeded random weights (written once per interpreter)."""
    target = model_dir.with_name(f"{model_dir.name}-random-weights")
    if not (target / "config.json").exists() or not any(target.glob("*.safetensors")):
        target.mkdir(parents=True, exist_ok=True)
        for f in model_dir.iterdir():
            if f.is_file():
                (target / f.name).write_bytes(f.read_bytes())
        done = subprocess.run([python, "-c", WRITE_WEIGHTS, str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            raise EngineError(f"cannot write random weights into {target}", log_tail=done.stderr[-2000:])
    return str(target)
