"""The engine adapter protocol. Adding an engine = one module implementing this + one registry line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from perfci.config import Model, Suite
from perfci.measure.caches import Cache
from perfci.measure.envs import Env, distribution_version
from perfci.measure.startup import Pattern


@dataclass(frozen=True, slots=True)
class Launch:
    """What to spawn: an argv list (never a shell string) and environment additions."""

    argv: list[str]
    served_model: str  # the `model` field clients must send
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    # What runs in place of the engine's own compiled kernels, when not its own build (e.g. perfci's CPU
    # stand-in for SGLang's kernel package); stored in the run record as `build.kernels`.
    kernels: str | None = None


@dataclass(frozen=True, slots=True)
class LaunchContext:
    python: str  # the build's interpreter
    model: Model
    model_path: str  # local directory or hub id the engine loads
    port: int
    suite: Suite
    cache: str  # "cold" | "warm": what the suite asked for (the runner empties the caches for a cold start)
    compile_cache: Path  # this build's and model's compile caches, kept between starts
    workdir: Path  # scratch space for this start (logs, generated config files)
    on_gpu: bool  # whether this machine has an NVIDIA GPU (some flags mean host memory on a CPU)


class Engine(Protocol):
    name: ClassVar[str]
    distributions: ClassVar[tuple[str, ...]]
    commit_wheels: ClassVar[str | None]
    git_subdirectory: ClassVar[str | None]
    # Log patterns for startup phases, and which reported phases add up without overlapping.
    patterns: ClassVar[Sequence[Pattern]]
    additive_phases: ClassVar[Sequence[str]]

    def launch(self, ctx: LaunchContext) -> Launch: ...

    def caches(self, ctx: LaunchContext) -> list[Cache]:
        """The on-disk caches a start of this build and model uses, all under `ctx.compile_cache`."""
        ...

    def request_extras(self) -> Mapping[str, Any]:
        """Extra JSON body fields that make the engine emit exactly max_tokens tokens."""
        ...

    def identify(self, python: str) -> tuple[str | None, str | None]:
        """(version, commit) of the engine installed for `python`."""
        ...

    def post_install(self, env: Env) -> None:
        """Fix up a freshly installed env before it is marked complete (e.g. drop broken extras)."""
        ...


class Adapter:
    """Defaults most adapters share; each engine module overrides what differs."""

    name: ClassVar[str]
    distributions: ClassVar[tuple[str, ...]] = ()  # its packages: build strings name it by them; they carry its version
    commit_wheels: ClassVar[str | None] = None  # an index of per-commit wheels of its first distribution
    git_subdirectory: ClassVar[str | None] = None  # where its pyproject.toml lives in its git repository
    patterns: ClassVar[Sequence[Pattern]] = ()
    additive_phases: ClassVar[Sequence[str | tuple[str, ...]]] = ()

    def caches(self, ctx: LaunchContext) -> list[Cache]:
        return []  # keeps nothing on disk between starts: every start is what the suite asked for

    def request_extras(self) -> Mapping[str, Any]:
        return {"ignore_eos": True}  # vLLM, SGLang, TensorRT-LLM: exact output lengths

    def identify(self, python: str) -> tuple[str | None, str | None]:
        return version_of(python, self.distributions), None

    def post_install(self, env: Env) -> None:
        return None


def version_of(python: str, distributions: Sequence[str]) -> str | None:
    """The installed version of the first of `distributions` present for `python`."""
    return next((v for d in distributions if (v := distribution_version(python, d))), None)


def cache_root(ctx: LaunchContext) -> Path:
    """This build's and model's cache root, made if missing. The runner measures (and for a cold start
    empties) the caches under it before each start; engines key their caches by config beneath it."""
    ctx.compile_cache.mkdir(parents=True, exist_ok=True)
    return ctx.compile_cache
