"""The `sim` engine: perfci's own OpenAI-compatible SIMULATOR (perfci/measure/simulator.py), for tests, demos and
bisect experiments. Its numbers describe a latency model, never a real engine.

A latency model can be named as a build, `sim:PATH` (a TOML file of `[sim]` keys): the build's version is
`sim-<hash8>`, the hash of the model's values, so runs of two models are runs of two builds, and the same
model in two files (or reformatted) is one build."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import perfci
from perfci.config import Sim
from perfci.errors import ConfigError
from perfci.measure.caches import Cache
from perfci.measure.engines.base import Adapter, Launch, LaunchContext, cache_root
from perfci.measure.startup import duration, mark


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
        argv = [ctx.python, "-m", "perfci.measure.simulator", "--host", "127.0.0.1", "--port", str(ctx.port)]
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


BUILD_PREFIX = "sim:"


@dataclass(frozen=True, slots=True)
class SimBuild:
    """A latency model named as a build."""

    sim: Sim
    digest: str  # sha256 of the model's values (canonical JSON)
    path: str | None = None  # the file it was named by (`sim:PATH`), so that it can be named again

    @property
    def version(self) -> str:
        return f"sim-{self.digest[:8]}"

    @property
    def key(self) -> str:
        return f"sim-{self.digest[:16]}"

    @property
    def source(self) -> str:
        """Where the build came from: `sim:PATH` as it was named (`perfci confirm` names it again from there and
        checks the version still matches), else `sim:<hash16>` (a bisect trial's model, from a commit)."""
        return f"sim:{self.path or self.digest[:16]}"


def is_sim_build(text: str) -> bool:
    return text.startswith(BUILD_PREFIX)


def load_build(text: str) -> SimBuild:
    """`sim:PATH` -> its latency model; a bad file raises ConfigError naming the file and the key."""
    from perfci.measure.simulator import load_config  # the server module (aiohttp) only when a sim build is named

    path = text.removeprefix(BUILD_PREFIX)
    if not path:
        raise ConfigError(f"bad build {text!r}: give the latency model file, e.g. sim:models/a.toml")
    if not Path(path).is_file():
        raise ConfigError(f"bad build {text!r}: {path}: no such latency model file")
    return dataclasses.replace(build_of(load_config(config_file=Path(path))), path=path)


def build_of(sim: Sim) -> SimBuild:
    """A latency model as a build (bisect trials of the sim driver are builds of their commit's model)."""
    return SimBuild(sim=sim, digest=hashlib.sha256(json.dumps(sim.model_dump(), sort_keys=True).encode()).hexdigest())
