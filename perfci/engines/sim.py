"""The `sim` engine: perfci's own OpenAI-compatible SIMULATOR (perfci/simulator.py), for tests, demos and
bisect experiments. Its numbers describe a latency model, never a real engine."""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

import perfci
from perfci.caches import Cache
from perfci.engines.base import Adapter, Launch, LaunchContext, cache_root
from perfci.startup import duration, mark


class SimEngine(Adapter):
    name: ClassVar[str] = "sim"
    patterns: ClassVar = (
        duration("load_weights", r"load_weights took ([\d.]+) s"),
        duration("compile", r"compile took ([\d.]+) s"),
        duration("warmup", r"warmup took ([\d.]+) s"),
        mark("server_up", r"Application startup complete"),
    )
    additive_phases: ClassVar = ("load_weights", "compile", "warmup")

    def launch(self, ctx: LaunchContext) -> Launch:
        argv = [ctx.python, "-m", "perfci.simulator", "--host", "127.0.0.1", "--port", str(ctx.port)]
        argv += ["--model", ctx.model.name, "--config", json.dumps(ctx.suite.sim.model_dump())]
        cache_root(ctx)
        argv += ["--cache-dir", str(self.caches(ctx)[0].path)]
        argv += ctx.model.engine_args.get(self.name, [])
        return Launch(argv=argv, served_model=ctx.model.name)

    def caches(self, ctx: LaunchContext) -> list[Cache]:
        # Its compile step's artifacts, keyed by the latency model as vLLM keys its cache by config hash: the
        # latency model lives in the suite, not in the model the cache root is named after.
        digest = hashlib.sha256(ctx.suite.sim.model_dump_json().encode()).hexdigest()[:10]
        return [Cache("sim-compile", ctx.compile_cache / f"sim-{digest}")]

    def identify(self, python: str) -> tuple[str | None, str | None]:
        return perfci.__version__, None
