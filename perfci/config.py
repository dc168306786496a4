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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from perfci.errors import ConfigError
from perfci.resources import shipped

TINY_MODEL = "perfci:tiny-llama"
TINY_MODEL_MAX_LEN = 4096  # perfci.measure.tinymodel's max_position_embeddings: an engine's default for it
# No served model takes more; a bigger count is a typo that would only fail once prompts are built.
MAX_TOKENS = 1_048_576


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(Strict):
    """A token count drawn per request from a seeded RNG, clamped to [min, max] and to at least 1."""

    dist: Literal["uniform", "normal", "lognormal"] = Field(
        description="The distribution: uniform needs min and max; normal and lognormal need mean and std."
    )
    min: int | None = Field(
        default=None, ge=1, le=MAX_TOKENS, description="Lowest count (the uniform's lower end, else a clamp)."
    )
    max: int | None = Field(
        default=None, ge=1, le=MAX_TOKENS,
        description="Highest count (the uniform's upper end, else a clamp); needed for the length bounds check.",
    )
    mean: float | None = Field(
        default=None, gt=0, le=MAX_TOKENS, description="Mean of the token count (normal, lognormal)."
    )
    std: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Standard deviation of the token count (normal, lognormal; for lognormal the underlying normal "
            "is solved from mean and std)."
        ),
    )

    @model_validator(mode="after")
    def _complete(self) -> Distribution:
        need = {"uniform": ("min", "max"), "normal": ("mean", "std"), "lognormal": ("mean", "std")}[self.dist]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"{self.dist} distribution needs {', '.join(missing)}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


TokenCount = Annotated[int, Field(ge=1, le=MAX_TOKENS)] | Distribution


def largest(count: int | Distribution) -> int | None:
    """The largest token count a request can be given; None when a distribution has no upper bound."""
    return count if isinstance(count, int) else count.max

NAME = r"^[A-Za-z0-9._-]+$"


class Model(Strict):
    """What to serve (`[[models]]`). Every model is one engine start (per cache state) that serves the
    workloads naming it. The toggles are engine-neutral: each engine adapter maps them onto its own flags."""

    name: str = Field(pattern=NAME, description="The name the engine serves the model under; unique in the suite.")
    source: str = Field(
        default=TINY_MODEL,
        description="A Hugging Face id, a local directory, or "
        f"`{TINY_MODEL}` (perfci's built-in tiny model: no weights, nothing downloaded).",
    )
    max_model_len: int | None = Field(
        default=None, ge=16, le=MAX_TOKENS,
        description="Context length the engine is started with; unset: the engine's default. Prompt plus output "
        "tokens of every workload must fit it (the tiny model's positions when unset).",
    )
    tensor_parallel: int = Field(default=1, ge=1, description="GPUs the model is split over.")
    # None keeps the engine's own default (vLLM compiles and captures graphs by default; SGLang does not
    # torch.compile unless asked).
    cuda_graphs: bool | None = Field(
        default=None, description="Use CUDA graphs (false: eager mode); unset: the engine's default."
    )
    torch_compile: bool | None = Field(default=None, description="Use torch.compile; unset: the engine's default.")
    dtype: str | None = Field(
        default=None, description="Weight and activation dtype, e.g. `bfloat16`; unset: the engine's default."
    )
    engine_args: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Extra arguments per engine name, appended verbatim: `{ vllm = ["--max-num-seqs", "64"] }` '
        "(a list, never a shell string).",
    )

    @model_validator(mode="after")
    def _fits_the_tiny_model(self) -> Model:
        if self.source == TINY_MODEL and self.max_model_len is not None and self.max_model_len > TINY_MODEL_MAX_LEN:
            raise ValueError(f"max_model_len {self.max_model_len} is beyond the tiny model's "
                             f"{TINY_MODEL_MAX_LEN} positions")  # fmt: skip
        return self

    @property
    def context_limit(self) -> int | None:
        """Prompt + output tokens the served model takes: max_model_len, or the tiny model's positions."""
        if self.max_model_len is not None:
            return self.max_model_len
        return TINY_MODEL_MAX_LEN if self.source == TINY_MODEL else None


class Workload(Strict):
    """One request shape (`[[workloads]]`) and the load levels it is measured at."""

    name: str = Field(pattern=NAME, description="Unique in the suite; part of every series' key.")
    model: str | None = Field(default=None, description="A model name from `[[models]]`; unset: every model.")
    api: Literal["completions", "chat"] = Field(
        default="completions", description="OpenAI endpoint: `/v1/completions` or `/v1/chat/completions`, streamed."
    )
    prompt_tokens: TokenCount = Field(
        description=(
            "Prompt length in tokens of the served model's tokenizer: a count, or a table drawn per request "
            "(see Distribution)."
        ),
    )
    output_tokens: TokenCount = Field(
        description=(
            "Tokens each request asks for (`max_tokens`, with the engine's option to ignore end-of-sequence "
            "where it has one)."
        ),
    )
    seed: int = Field(
        default=0,
        description="Seeds prompts and drawn token counts; the same seed gives every build the same requests.",
    )
    load: Load = Field(description="The load levels (see Load).")


class Load(Strict):
    """Load levels of one workload; set at least one. Every listed level becomes a point (times `repeats`)."""

    synchronous: bool = Field(default=False, description="One request at a time.")
    concurrency: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, description="Closed-loop levels: N requests in flight, the next sent as one ends."
    )
    rate: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=list, description="Open-loop levels in requests/s, sent on the `arrival` schedule."
    )
    arrival: Literal["constant", "poisson", "gamma"] = Field(
        default="poisson", description="Arrival process of the `rate` levels."
    )
    burstiness: float = Field(
        default=1.0,
        gt=0,
        description=(
            "Gamma shape of the arrival gaps (as `vllm bench serve --burstiness`): 1 is Poisson, below 1 "
            "burstier, above 1 more regular."
        ),
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, description="Cap on requests in flight at rate levels (and sweep rates); unset: no cap."
    )
    sweep: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Synchronous, then throughput, then this many constant rates evenly between the two measured "
            "request rates (as guidellm)."
        ),
    )
    throughput_concurrency: int = Field(
        default=64, ge=1, description="Requests in flight of a sweep's throughput level."
    )

    @model_validator(mode="after")
    def _some_level(self) -> Load:
        if not (self.synchronous or self.concurrency or self.rate or self.sweep):
            raise ValueError("no load level: set synchronous, concurrency, rate or sweep")
        return self


class Slo(Strict):
    """Limits in milliseconds. A request counts toward goodput when its TTFT, TPOT and E2E are within the
    limits (as `vllm bench serve --goodput`); a point meets the SLO when the `percentile` of each metric
    (ITL included, pooled over gaps) is within its limit."""

    percentile: float = Field(default=99, gt=0, le=100, description="The percentile a point is judged at.")
    ttft_ms: float | None = Field(default=None, gt=0, description="Time to first token limit.")
    tpot_ms: float | None = Field(default=None, gt=0, description="Time per output token limit.")
    itl_ms: float | None = Field(default=None, gt=0, description="Inter-token latency limit (per point only).")
    e2e_ms: float | None = Field(default=None, gt=0, description="End-to-end latency limit.")


class Sim(Strict):
    """Latency model of the `sim` engine (a simulator: for tests, demos and bisect experiments). Each
    scheduler step admits waiting requests up to `max_batch` and gives every decoding request one token."""

    prefill_ms_per_token: float = Field(
        default=0.05, ge=0, description="Step time added per prompt token of an admitted request."
    )
    decode_ms_per_token: float = Field(
        default=5.0, ge=0, description="Step time of one token with one request decoding."
    )
    first_token_ms: float = Field(
        default=2.0, ge=0, description="Fixed scheduling overhead before a request's first token."
    )
    slowdown_per_request: float = Field(
        default=0.02, ge=0, description="The decode step grows by this fraction per other decoding request."
    )
    max_batch: int = Field(default=64, ge=1, description="Requests decoding at once; the rest wait.")
    startup_s: float = Field(default=0.5, ge=0, description="Time from spawn to ready.")
    error_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of requests answered HTTP 500 before streaming."
    )
    drop_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of requests whose connection is cut mid-stream."
    )
    malformed_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of requests that get a garbled SSE line mid-stream."
    )
    seed: int = Field(default=0, description="Seeds which requests get a fault.")
    start_noise: float = Field(
        default=0.0, ge=0, le=0.5,
        description="Relative standard deviation of a per-start speed factor: each start draws one factor "
        "(log-normal) that scales every step, as a real engine's speed differs a little from start to start. "
        "Drawn from `start_seed`, else fresh each start.",
    )
    start_seed: int | None = Field(
        default=None, description="Seeds the per-start factor (the same factor every start); unset: fresh each start."
    )


class Run(Strict):
    """How each point runs: a duration or a request count (the first reached ends the point); how long a
    request, a warmup and the whole run may take; and how many failed requests a point tolerates."""

    duration_s: float | None = Field(default=None, gt=0, description="Seconds of load per point.")
    requests: int | None = Field(default=None, ge=1, description="Measured requests per point.")
    warmup_requests: int = Field(
        default=2, ge=0, description="Requests sent before each point's measured window, not measured."
    )
    repeats: int = Field(default=1, ge=1, description="Times each point is measured, interleaved across load levels.")
    request_timeout_s: float = Field(default=120, gt=0, description="A request taking longer fails with a timeout.")
    idle_timeout_s: float = Field(
        default=30, gt=0,
        description="No byte from the server for this long (from the send or the last chunk) ends a request as a "
        "timeout.",
    )
    warmup_timeout_s: float = Field(
        default=30, gt=0, description="Warmup requests time out after min(this, request_timeout_s)."
    )
    stall_requests: int = Field(
        default=3, ge=0,
        description="A point stops once this many requests in a row (warmups included) time out or cannot "
        "connect, and the model's later points are skipped; 0: never.",
    )
    max_duration_s: float | None = Field(
        default=None, gt=0,
        description="The run's deadline, from its start: points not started by then are skipped with the reason.",
    )
    ready_timeout_s: float = Field(
        default=600, gt=0, description="Seconds an engine start may take to answer its health check."
    )
    max_error_rate: float = Field(
        default=0.0, ge=0, le=1,
        description="A point whose failed-request rate is above this is `degraded` (default: any failure).",
    )
    failed_error_rate: float = Field(
        default=0.5, ge=0, le=1,
        description="A point whose failed-request rate is above this (or that completed nothing) is `failed`.",
    )

    @model_validator(mode="after")
    def _bounded(self) -> Run:
        if self.duration_s is None and self.requests is None:
            raise ValueError("set duration_s or requests, or both")
        if self.max_error_rate > self.failed_error_rate:
            raise ValueError(f"max_error_rate ({self.max_error_rate}) is above failed_error_rate "
                             f"({self.failed_error_rate})")  # fmt: skip
        return self


class Startup(Strict):
    """Startup measurements: each listed cache state is one start of every model. 'cold' empties this build's
    engine caches first; 'warm' first makes an untimed priming start when they are empty. Each start is
    labelled with the state measured just before it (docs/metrics.md)."""

    caches: list[Literal["cold", "warm"]] = Field(
        default_factory=lambda: ["warm"], description="One start per entry, in order; the last start serves the points."
    )
    drop_page_cache: bool = Field(
        default=False,
        description="Before a cold start, drop the model's weight files from the OS page cache (posix_fadvise; no "
        "root needed). Off: a cold start with resident weights is labelled `cold-weights-cached`.",
    )
    first_request: bool = Field(
        default=True, description="Time a first request after ready as its own phase (`first_token`)."
    )


class Machine(Strict):
    """How the machine is held while the suite runs (see "GPU clock locking" in docs/runner.md)."""

    lock_clocks: Literal[False, "base", "max"] | Annotated[int, Field(ge=1, strict=True)] = Field(
        default=False,
        description="Lock every NVIDIA GPU's SM clock for the run, unlocked at its end: `\"base\"` (the GPU's "
        "default applications clock, which it can hold under load), `\"max\"` (its highest SM clock), or a "
        "clock in MHz; `false`: leave the clocks alone. Needs root or clock-setting rights (exit 3 without).",
    )

    @field_validator("lock_clocks", mode="before")
    @classmethod
    def _no_zero_mhz(cls, v: object) -> object:
        # pydantic would read 0 as False; a clock of 0 MHz is a mistake, not "off".
        if isinstance(v, int) and not isinstance(v, bool) and v < 1:
            raise ValueError(f"a clock in MHz must be at least 1, got {v}; `false` leaves the clocks alone")
        return v


class Suite(Strict):
    """A suite file: models, workloads with their load levels, and how every point runs."""

    name: str = Field(pattern=NAME, description="The suite's name; part of every series' key.")
    description: str = Field(default="", description="One line for people.")
    models: list[Model] = Field(min_length=1, description="What to serve (see Model).")
    workloads: list[Workload] = Field(
        default_factory=list, description="What to send (see Workload); none: a startup-only suite."
    )
    run: Run = Field(default=Run(requests=20), description="How each point runs (see Run).")
    startup: Startup = Field(default=Startup(), description="Which starts are measured (see Startup).")
    slo: Slo = Field(default=Slo(), description="Goodput limits (see Slo).")
    sim: Sim = Field(default=Sim(), description="The `sim` engine's latency model (see Sim).")
    machine: Machine = Field(default=Machine(), description="How the machine is held during the run (see Machine).")
    # Set by load_suite: the suite file's content hash, so runs of different suite versions never mix.
    content_hash: str = Field(default="", json_schema_extra={"set_by_perfci": True})
    path: str = Field(default="", json_schema_extra={"set_by_perfci": True})

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
        problems = self.length_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def length_problems(self) -> list[str]:
        """Workloads whose prompt + output tokens may not fit the context of a model they run on."""
        problems = []
        for i, w in enumerate(self.workloads):
            for j, m in enumerate(self.models):
                limit = m.context_limit
                if limit is None or w.model not in (None, m.name):
                    continue
                where = f"workloads[{i}] ({w.name}) on models[{j}] ({m.name})"
                prompt, output = largest(w.prompt_tokens), largest(w.output_tokens)
                if prompt is None or output is None:
                    unbounded = "prompt_tokens" if prompt is None else "output_tokens"
                    problems.append(f"{where}: {unbounded} has no max; set one so requests fit max_model_len {limit}")
                elif prompt + output > limit:
                    problems.append(f"{where}: prompt_tokens {prompt} + output_tokens {output} = {prompt + output} "
                                    f"exceeds the model's max_model_len {limit}")  # fmt: skip
        return problems

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
        elif part in ("int", "Distribution") or str(part).startswith(("function-", "constrained-", "literal[")):
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
        elif not loc:  # a check across keys: its message names them
            lines.append(f"  {err['msg'].removeprefix('Value error, ')}")
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


def with_lock_clocks(suite: Suite, value: str | None) -> Suite:
    """The `--lock-clocks` override (base, max, MHz or off), validated like the file. It changes the suite's
    hash, as editing the file would: runs at locked and unlocked clocks never share a series."""
    if value is None:
        return suite
    text = value.strip().lower()
    parsed: object = False if text in ("off", "false") else int(text) if text.isdigit() else text
    try:
        machine = Machine.model_validate({**suite.machine.model_dump(), "lock_clocks": parsed})
    except ValidationError as e:
        raise ConfigError(f"--lock-clocks {value!r}: expected base, max, off or a clock in MHz") from e
    if machine == suite.machine:
        return suite
    digest = hashlib.sha256(f"{suite.content_hash}|lock_clocks={machine.lock_clocks}".encode()).hexdigest()[:16]
    return suite.model_copy(update={"machine": machine, "content_hash": digest})
