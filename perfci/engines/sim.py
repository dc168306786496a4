"""The `sim` engine: perfci's own OpenAI-compatible SIMULATOR (perfci/simulator.py), for tests, demos and
bisect experiments. Its numbers describe a latency model, never a real engine."""

from __future__ import annotations

import json
from typing import ClassVar

import perfci
from perfci.engines.base import Adapter, Launch, LaunchContext
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
        argv += ctx.model.engine_args.get(self.name, [])
        return Launch(argv=argv, served_model=ctx.model.name)

    def identify(self, python: str) -> tuple[str | None, str | None]:
        return perfci.__version__, None
