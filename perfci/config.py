"""Suite files (TOML) as pydantic models that reject unknown keys.

A suite names models (with engine-neutral toggles and per-engine extra args), workloads (token shapes), load
levels per workload, how long each point runs, repeats, warmup, and SLOs for goodput. `load_suite` turns every
validation problem into a ConfigError naming the file, the key path and the bad value.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from perfci.errors import ConfigError
from perfci.resources import shipped

TINY_MODEL = "perfci:tiny-llama"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(Strict):
    """A token count drawn per request from a seeded RNG."""

    dist: Literal["uniform", "normal", "lognormal"]
    min: int | None = Field(default=None, ge=1)
    max: int | None = Field(default=None, ge=1)
    mean: float | None = Field(default=None, gt=0)
    std: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> Distribution:
        need = {"uniform": ("min", "max"), "normal": ("mean", "std"), "lognormal": ("mean", "std")}[self.dist]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"{self.dist} distribution needs {', '.join(missing)}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


TokenCount = Annotated[int, Field(ge=1)] | Distribution


class Model(Strict):
    """What to serve. `source` is a Hugging Face id, a local directory, or perfci's built-in tiny model."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    source: str = TINY_MODEL
    # Engine-neutral toggles, mapped by each engine adapter onto its own flags.
    max_model_len: int | None = Field(default=None, ge=16)
    tensor_parallel: int = Field(default=1, ge=1)
    # None keeps the engine's own default (vLLM compiles and captures graphs by default; SGLang does not
    # torch.compile unless asked).
    cuda_graphs: bool | None = None
    torch_compile: bool | None = None
    dtype: str | None = None
    # Extra argv per engine name, appended verbatim (a list, never a shell string).
    engine_args: dict[str, list[str]] = Field(default_factory=dict)


class Workload(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    model: str | None = None  # a model name from [[models]]; default: every model
    api: Literal["completions", "chat"] = "completions"
    prompt_tokens: TokenCount
    output_tokens: TokenCount
    seed: int = 0
    load: Load


class Load(Strict):
    """Load levels of one workload. Every listed level becomes a point (times `repeats`)."""

    synchronous: bool = False
    concurrency: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    rate: list[Annotated[float, Field(gt=0)]] = Field(default_factory=list)
    arrival: Literal["constant", "poisson", "gamma"] = "poisson"
    burstiness: float = Field(default=1.0, gt=0)  # gamma shape, as `vllm bench serve --burstiness`
    max_concurrency: int | None = Field(default=None, ge=1)  # cap in-flight requests of rate levels
    # synchronous -> throughput -> `sweep` constant rates evenly between (guidellm / Modal's advisor).
    sweep: int | None = Field(default=None, ge=1)
    throughput_concurrency: int = Field(default=64, ge=1)

    @model_validator(mode="after")
    def _some_level(self) -> Load:
        if not (self.synchronous or self.concurrency or self.rate or self.sweep):
            raise ValueError("no load level: set synchronous, concurrency, rate or sweep")
        return self


class Slo(Strict):
    """Limits in milliseconds. A request counts toward goodput when its TTFT, TPOT and E2E are within the
    limits (as `vllm bench serve --goodput`); a point meets the SLO when the `percentile` of each metric
    (ITL included, pooled over gaps) is within its limit."""

    percentile: float = Field(default=99, gt=0, le=100)
    ttft_ms: float | None = Field(default=None, gt=0)
    tpot_ms: float | None = Field(default=None, gt=0)
    itl_ms: float | None = Field(default=None, gt=0)
    e2e_ms: float | None = Field(default=None, gt=0)


class Sim(Strict):
    """Latency model of the `sim` engine (a simulator: for tests, demos and bisect experiments)."""

    prefill_ms_per_token: float = Field(default=0.05, ge=0)
    decode_ms_per_token: float = Field(default=5.0, ge=0)
    first_token_ms: float = Field(default=2.0, ge=0)  # fixed scheduling overhead before the first token
    slowdown_per_request: float = Field(default=0.02, ge=0)  # decode step grows by this fraction per peer
    max_batch: int = Field(default=64, ge=1)
    startup_s: float = Field(default=0.5, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)  # HTTP 500 before streaming
    drop_rate: float = Field(default=0.0, ge=0, le=1)  # connection cut mid-stream
    malformed_rate: float = Field(default=0.0, ge=0, le=1)  # a garbled SSE line mid-stream
    seed: int = 0


class Run(Strict):
    """How each point runs: a duration or a request count (the first reached ends the point)."""

    duration_s: float | None = Field(default=None, gt=0)
    requests: int | None = Field(default=None, ge=1)
    warmup_requests: int = Field(default=2, ge=0)
    repeats: int = Field(default=1, ge=1)
    request_timeout_s: float = Field(default=120, gt=0)
    ready_timeout_s: float = Field(default=600, gt=0)

    @model_validator(mode="after")
    def _bounded(self) -> Run:
        if self.duration_s is None and self.requests is None:
            raise ValueError("set duration_s or requests, or both")
        return self


class Startup(Strict):
    """Startup measurements: each listed cache state is one start of every model ('cold' empties the
    engine's compile caches first)."""

    caches: list[Literal["cold", "warm"]] = Field(default_factory=lambda: ["warm"])
    first_request: bool = True  # time a first request after ready as its own phase


class Suite(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    description: str = ""
    models: list[Model] = Field(min_length=1)
    workloads: list[Workload] = Field(default_factory=list)
    run: Run = Run(requests=20)
    startup: Startup = Startup()
    slo: Slo = Slo()
    sim: Sim = Sim()
    # Set by load_suite: the suite file's content hash, so runs of different suite versions never mix.
    content_hash: str = ""
    path: str = ""

    @model_validator(mode="after")
    def _references(self) -> Suite:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate model names: {names}")
        wl = [w.name for w in self.workloads]
        if len(set(wl)) != len(wl):
            raise ValueError(f"duplicate workload names: {wl}")
        for w in self.workloads:
            if w.model is not None and w.model not in names:
                raise ValueError(f"workload {w.name!r} names model {w.model!r}, not one of {names}")
        return self

    def models_for(self, workload: Workload) -> list[Model]:
        return [m for m in self.models if workload.model in (None, m.name)]


Workload.model_rebuild()


def resolve_suite_path(name_or_path: str) -> Path | Traversable:
    """`smoke` means the shipped suites/smoke.toml; anything with a slash or .toml is a path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or "/" in name_or_path:
        return p
    return shipped("suites") / f"{name_or_path}.toml"


def shipped_suites() -> list[str]:
    """The names of the suites perfci ships (`smoke`, ...), sorted."""
    names = (item.name for item in shipped("suites").iterdir())
    return sorted(name.removesuffix(".toml") for name in names if name.endswith(".toml"))


def is_shipped(path: str | Path) -> bool:
    """Whether a suite file is one perfci ships (its name and hash identify it; where perfci is installed
    says nothing about the run)."""
    folder = shipped("suites")
    # Installed or checked out, the shipped folder is on the file system (a zip import would not be).
    return bool(str(path)) and isinstance(folder, Path) and Path(path).resolve().parent == folder.resolve()


Model_ = TypeVar("Model_", bound=BaseModel)


def load_toml(path: str | Path | Traversable, model: type[Model_], *, what: str) -> Model_:
    """A TOML config file (a path, or a file perfci ships) validated by `model`; ConfigError naming the file (and
    the key) when it is not."""
    path = Path(path) if isinstance(path, str) else path
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {what} ({e.strerror})") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(path, e, what=what)) from e


def load_suite(name_or_path: str | Path) -> Suite:
    path = resolve_suite_path(str(name_or_path))
    try:
        raw = path.read_bytes()
    except OSError as e:
        known = ", ".join(shipped_suites())
        raise ConfigError(f"{path}: cannot read suite ({e.strerror}); shipped suites: {known}") from e
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    for key in ("content_hash", "path"):
        data.pop(key, None)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(path, e)) from e
    return suite.model_copy(update={"content_hash": hashlib.sha256(raw).hexdigest()[:16], "path": str(path)})


def _key_path(loc: tuple) -> str:
    """('workloads', 0, 'load', 'rate', 1) -> 'workloads[0].load.rate[1]'; drops pydantic's union tags."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("int", "Distribution") or str(part).startswith(("function-", "constrained-")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def format_validation_error(path: Path | Traversable | str, error: ValidationError, *, what: str = "suite") -> str:
    """One line per problem: key path, what is wrong, and the value given."""
    lines = [f"{path}: invalid {what}"]
    for err in error.errors():
        loc = _key_path(err["loc"])
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key{shown}")
        else:
            lines.append(f"  {loc or '(top level)'}: {err['msg']}{shown}")
    return "\n".join(lines)


def with_sim_overrides(suite: Suite, overrides: Iterable[str]) -> Suite:
    """Apply `KEY=VALUE` overrides (from the CLI) to the suite's sim latency model, validated like the file."""
    values = suite.sim.model_dump()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--sim {item!r}: expected KEY=VALUE, e.g. decode_ms_per_token=3")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    try:
        return suite.model_copy(update={"sim": Sim.model_validate(values)})
    except ValidationError as e:
        raise ConfigError(format_validation_error("--sim", e, what="sim override")) from e
