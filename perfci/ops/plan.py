"""Plan: the benchmark jobs to run now, as a GitHub Actions matrix.

A job is one watched build × one hardware label × one suite (from the watch config). It is done once a run
record of it has arrived in the store that did not fail. Otherwise it is handed out, and remembered as
handed out (`planned_jobs`); a job handed out whose run has not arrived within `reschedule_after_hours`, or
whose run failed, is handed out again, at most `max_attempts` times in all. Yanked builds, and pre-releases
an engine does not follow, are never planned. The output is deterministic: the same store, config and clock
give the same matrix, newest builds first. docs/watch.md describes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from packaging.version import Version
from sqlite_utils import Database

from perfci import utc
from perfci.measure import envs
from perfci.ops.watch import Engine, Found, WatchConfig, wanted
from perfci.store import builds as stored_builds
from perfci.store import write_transaction

MAX_MATRIX = 256  # GitHub refuses a matrix of more jobs; the rest wait for the next plan


@dataclass(frozen=True, slots=True)
class Job:
    build: str
    package: str
    hardware: str
    suite: str
    attempt: int

    @property
    def key(self) -> str:
        return f"{self.build}|{self.hardware}|{self.suite}"

    @property
    def concurrency(self) -> str:
        """The job's GitHub concurrency group: two plans never run the same job at once. It is per job, not
        per GPU: a group holds one running and one pending job and cancels the pending one when a third
        arrives, which would drop planned work. One benchmark per GPU comes from each runner taking one job."""
        return f"perfci-{self.hardware}-{envs.parse_build(self.build).key}-{self.suite}"

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.key, "build": self.build, "package": self.package, "hardware": self.hardware,
                "suite": self.suite, "attempt": self.attempt, "concurrency": self.concurrency}  # fmt: skip


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)  # to run now
    in_flight: list[str] = field(default_factory=list)  # handed out earlier, still within their time
    given_up: list[str] = field(default_factory=list)  # handed out max_attempts times without a good run
    deferred: int = 0  # beyond MAX_MATRIX: planned next time
    done: int = 0

    def matrix(self) -> dict[str, Any]:
        return {"include": [j.as_dict() for j in self.jobs]}

    def as_dict(self) -> dict[str, Any]:
        return {"matrix": self.matrix(), "count": len(self.jobs), "in_flight": self.in_flight,
                "given_up": self.given_up, "deferred": self.deferred, "done": self.done}  # fmt: skip

    def summary(self) -> str:
        lines = [f"{len(self.jobs)} to run, {len(self.in_flight)} in flight, {self.done} done, "
                 f"{len(self.given_up)} given up, {self.deferred} deferred"]  # fmt: skip
        lines += [f"  run: {j.key} (attempt {j.attempt})" for j in self.jobs]
        lines += [f"  given up: {k}" for k in self.given_up]
        return "\n".join(lines)


def plan(db: Database, config: WatchConfig, *, record: bool = True,
         now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Plan:  # fmt: skip
    """Work out the jobs to run now; with `record`, remember them as handed out (one transaction)."""
    at = now()
    overdue_before = utc.stamp(at - timedelta(hours=config.reschedule_after_hours))
    result = Plan()
    with write_transaction(db):  # read and hand out under one lock: two plans at once cannot both hand out a job
        for package, engine in sorted(config.engines.items()):
            for build in _builds(db, package, engine):
                source = envs.parse_build(build).source
                for hardware in engine.hardware:
                    for suite in engine.suites:
                        _decide(db, result, Job(build, package, hardware, suite, 1), source, overdue_before,
                                config.max_attempts)  # fmt: skip
        result.deferred = max(0, len(result.jobs) - MAX_MATRIX)
        result.jobs = result.jobs[:MAX_MATRIX]
        if record:
            _hand_out(db, result.jobs, utc.stamp(at))
    return result


def _builds(db: Database, package: str, engine: Engine) -> list[str]:
    """The package's watched builds the policy wants, not yanked: newest first (commit builds by when seen)."""
    kept = [r for r in stored_builds.watched(db, package)
            if wanted(engine, Found(build=r.build, package=package, version=r.version, commit=r.commit,
                                    prerelease=r.prerelease))]  # fmt: skip
    kept.sort(key=lambda r: (Version(r.version) if r.version else Version("0"), r.first_seen, r.build), reverse=True)
    return [r.build for r in kept]


def _decide(db: Database, result: Plan, job: Job, source: str, overdue_before: str, max_attempts: int) -> None:
    runs = stored_builds.run_outcomes(db, source=source, hardware_label=job.hardware, suite=job.suite)
    if any(status != "failed" for status, _ in runs):
        result.done += 1
        return
    handed = stored_builds.handed_out(db, job.key)
    if handed is None:
        result.jobs.append(job)
        return
    attempts, last_planned = handed
    failed_since = any(created >= last_planned for _, created in runs)
    if not failed_since and last_planned > overdue_before:
        result.in_flight.append(job.key)
    elif attempts >= max_attempts:
        result.given_up.append(job.key)
    else:
        result.jobs.append(Job(job.build, job.package, job.hardware, job.suite, attempts + 1))


def _hand_out(db: Database, jobs: list[Job], now: str) -> None:
    for job in jobs:
        stored_builds.hand_out(db, job=job.key, build=job.build, hardware_label=job.hardware, suite=job.suite,
                               attempts=job.attempt, now=now)  # fmt: skip
