"""Missing data: the series (engine package × hardware label) whose planned jobs have produced no run for too long.

`perfci plan` hands jobs out to runner pools; when a pool is down (no runner online, a broken image, a lost
token) its jobs never produce a run record, and nothing else would say so: detect only judges what arrived.
A series is *silent* when work was handed out for it more than `[alerts] silent_after_hours` ago and no run of
it has arrived since, of any status (a failed run still shows the pool is alive). Silence starts at the later
of its newest run and the first hand-out of the oldest job still waiting. `silent` is pure, with the clock
passed in; `load` reads the store. docs/watch.md describes the rule and the issue `perfci report` keeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlite_utils import Database

from perfci import utc
from perfci.measure import envs
from perfci.ops.watch import WatchConfig


@dataclass(frozen=True, slots=True)
class PlannedJob:
    build: str
    hardware_label: str
    suite: str
    first_planned: str  # ISO 8601 UTC, as perfci.utc.stamp writes it: such strings compare in time order
    last_planned: str


@dataclass(frozen=True, slots=True)
class RunSeen:
    source: str  # the run record's build source (envs.Build.source)
    hardware_label: str
    created: str


@dataclass(frozen=True, slots=True)
class Silence:
    package: str
    hardware_label: str
    since: str  # when the silence began: the newest run, or the first hand-out of the oldest job waiting after it
    last_run: str | None  # the newest run of the series, if any ever arrived
    waiting: tuple[str, ...]  # the jobs handed out and unanswered since then ("build|hardware|suite")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"waiting": list(self.waiting)}


def silent(config: WatchConfig, jobs: Iterable[PlannedJob], runs: Iterable[RunSeen], *, now: datetime) -> list[Silence]:
    """The silent series, by package then hardware label, of the (package, hardware) pairs `config` still plans
    (a label taken out of the config is not a silent one)."""
    limit = utc.stamp(now - timedelta(hours=config.alerts.silent_after_hours))
    package_of = {}  # build source -> package, for the builds that were planned
    by_series: dict[tuple[str, str], list[PlannedJob]] = {}
    for job in jobs:
        build = envs.parse_build(job.build)
        package_of[build.source] = build.package
        by_series.setdefault((build.package, job.hardware_label), []).append(job)
    newest: dict[tuple[str, str], str] = {}
    for run in runs:
        key = (package_of.get(run.source, ""), run.hardware_label)
        if key in by_series and run.created > newest.get(key, ""):
            newest[key] = run.created
    found = []
    for package, engine in sorted(config.engines.items()):
        for hardware in sorted(engine.hardware):
            last_run = newest.get((package, hardware))
            # Jobs handed out (most recently) after the newest run are the ones nothing has answered yet.
            mine = by_series.get((package, hardware), ())
            waiting = sorted((j for j in mine if last_run is None or j.last_planned > last_run),
                             key=lambda j: (j.first_planned, j.build, j.suite))  # fmt: skip
            if not waiting:
                continue
            since = max(waiting[0].first_planned, last_run or "")
            if since <= limit:
                jobs_waiting = tuple(f"{j.build}|{j.hardware_label}|{j.suite}" for j in waiting)
                found.append(Silence(package, hardware, since, last_run, jobs_waiting))
    return found


def load(db: Database) -> tuple[list[PlannedJob], list[RunSeen]]:
    """Every planned job, and every run's source, hardware label and time, from the store."""
    from perfci.store import builds

    jobs = [PlannedJob(*row) for row in builds.planned_jobs(db)]
    runs = [RunSeen(*row) for row in builds.runs_seen(db)]
    return jobs, runs


def check(db: Database, config: WatchConfig, *, now: datetime) -> list[Silence]:
    jobs, runs = load(db)
    return silent(config, jobs, runs, now=now)
