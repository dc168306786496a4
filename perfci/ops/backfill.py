"""Backfill: an engine's released history, oldest first, each release installed, run and stored.

The releases come from a package index read the way `perfci watch` reads it (yanked releases are left out,
as watch leaves them unbenchmarked; pre-releases only when asked). Each release gets its own environment
(perfci.envs), `repeats` runs of the suite (each a full `perfci run`: its starts and its points), and then
its environment is removed again unless it was there before the backfill began, so the disk holds one
release's environment at a time plus the shared uv cache.

Resumable without a state file of its own: a release is done when the store holds `repeats` finished runs
of its build with this suite (same content hash) on this machine's hardware label. A backfill killed midway
finds the releases it finished in the store and starts with the first one that is not; an interrupted run
does not count. A release whose engine ran but ended failed counts as done (it is data: that release does
not start here); one that cannot be installed is tried again by the next backfill.

Stand-in builds (`sim_dir`): each release runs on the sim engine with `<sim_dir>/<VERSION>.toml` as its
latency model, labelled with the release's version — how tests and demos drive a real index and a real
kill-and-resume without installing an engine.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import requests
from packaging.version import InvalidVersion, Version
from sqlite_utils import Database

from perfci import redact
from perfci.config import Suite
from perfci.errors import BuildError, ConfigError, EngineError
from perfci.measure import envs, hardware, runner
from perfci.measure.engines import sim as sim_engine
from perfci.ops import watch
from perfci.store import records

Status = Literal["done-before", "ran", "not-ok", "not-installable"]


@dataclass(frozen=True)
class Release:
    version: str
    build: str  # what perfci installs: PACKAGE==VERSION, or a stand-in sim:PATH
    uploaded: str | None = None


@dataclass
class Outcome:
    """What the backfill did with one release."""

    version: str
    build: str
    status: Status
    runs: list[str] = field(default_factory=list)  # run ids stored by this backfill
    seconds: float = 0.0  # wall time spent on it here (install, runs, cleanup)
    error: str | None = None
    env_removed: bool = False

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Progress(Protocol):
    def release_started(self, index: int, total: int, release: Release) -> None: ...
    def release_finished(self, index: int, total: int, outcome: Outcome) -> None: ...
    def installing(self, line: str) -> None: ...


class SilentProgress:
    def release_started(self, index: int, total: int, release: Release) -> None: ...
    def release_finished(self, index: int, total: int, outcome: Outcome) -> None: ...
    def installing(self, line: str) -> None: ...


def _version(text: str | None, option: str) -> Version | None:
    if text is None:
        return None
    try:
        return Version(text.rpartition("==")[2])
    except InvalidVersion:
        raise ConfigError(f"{option} {text!r} is not a version") from None


def releases(package: str, *, since: str | None = None, until: str | None = None, pre: bool = False,
             index_url: str = watch.PYPI_SIMPLE, sim_dir: Path | None = None,
             http: requests.Session | None = None) -> list[Release]:  # fmt: skip
    """The releases of `package` from `since` to `until` (inclusive; unset: all), oldest first, as the index
    lists them. ConfigError when the package is not an engine perfci installs or none is in range;
    SourceError (exit 4) when the index cannot be read."""
    packages = envs.engine_table().adapters
    if package not in packages:
        raise ConfigError(f"--engine {package!r}: not an engine package; one of {', '.join(packages)}")
    lo, hi = _version(since, "--since"), _version(until, "--until")
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"--since {since} is newer than --until {until}")
    source = watch.Source(kind="simple", url=index_url)
    found = watch.fetch(package, source, http or requests.Session(), github_releases=_no_github)
    chosen = sorted(
        (f for f in found if f.version and not f.yanked and (pre or not f.prerelease)
         and (lo is None or Version(f.version) >= lo) and (hi is None or Version(f.version) <= hi)),
        key=lambda f: Version(f.version or "0"),
    )  # fmt: skip
    if not chosen:
        between = f" from {since or 'the first'} to {until or 'the latest'}"
        raise ConfigError(f"{source.index}{package}/: no release of {package}{between} (yanked ones are left out"
                          + ("" if pre else ", and pre-releases without --pre") + ")")  # fmt: skip
    return [Release(v, f"{sim_engine.BUILD_PREFIX}{sim_dir / f'{v}.toml'}" if sim_dir else f"{package}=={v}",
                    f.uploaded) for f in chosen if (v := str(f.version))]  # fmt: skip


def _no_github(source: watch.Source) -> list:
    raise AssertionError("a backfill reads package indexes, not GitHub")


def build_source(release: Release) -> str:
    """The `source` its runs are stored with, known before anything is installed. BuildError when a stand-in's
    latency model is missing or unreadable (that release cannot be run)."""
    if sim_engine.is_sim_build(release.build):
        try:
            source = sim_engine.load_build(release.build).source
        except ConfigError as e:
            raise BuildError(f"{release.version}: {e}") from e
    else:
        source = envs.parse_build(release.build).source
    # As run records store it: a path in it is redacted (perfci.redact) the way the runner does.
    return redact.redact_source(source, home=os.path.expanduser("~"), cwd=os.getcwd())


def finished_runs(db: Database, *, source: str, suite: Suite, hardware_label: str,
                  version: str | None = None) -> list[str]:  # fmt: skip
    """Run ids of the stored runs that count toward a release being done (not interrupted); `version` too
    for stand-ins, whose source is their latency model (two releases may share one)."""
    if not db["runs"].exists():
        return []
    rows = db.execute(
        "SELECT run_id FROM runs WHERE source = ? AND suite = ? AND suite_hash = ? AND hardware_label = ? "
        "AND status != 'interrupted' AND (? IS NULL OR version = ?) ORDER BY created",
        [source, suite.name, suite.content_hash, hardware_label, version, version],
    ).fetchall()
    return [r[0] for r in rows]


def resolve(release: Release, on_output: Callable[[str], None]) -> runner.Target:
    """Install (or reuse) the release's build; a stand-in is labelled with the release's version."""
    target = runner.resolve_target(engine=release.build, on_output=on_output)
    return dataclasses.replace(target, version=release.version) if target.sim is not None else target


def backfill(*, db: Database, suite: Suite, releases: list[Release], out: Path, repeats: int = 1,
             prune: bool = True, progress: Progress | None = None, reporter: runner.Reporter | None = None,
             hardware_label: str | None = None, force: bool = False,
             run: Callable[..., tuple[records.RunRecord, Path]] = runner.run_and_store,
             resolve_release: Callable[[Release, Callable[[str], None]], runner.Target] = resolve,
             clock: Callable[[], float] = time.monotonic) -> list[Outcome]:  # fmt: skip
    """Run `suite` `repeats` times on every release not yet done, in the given order (oldest first), and return
    what happened to each. Interrupted (SIGINT/SIGTERM) goes on up once the run in progress is stored."""
    if repeats < 1:
        raise ConfigError(f"--repeats {repeats}: at least 1")
    progress = progress or SilentProgress()
    label = hardware_label or hardware.label(hardware.fingerprint())
    outcomes = []
    for index, release in enumerate(releases):
        progress.release_started(index, len(releases), release)
        started = clock()
        outcome = _one(db, suite, release, out, repeats, prune, progress, reporter, label, force, run,
                       resolve_release)  # fmt: skip
        outcome.seconds = round(clock() - started, 1)
        outcomes.append(outcome)
        progress.release_finished(index, len(releases), outcome)
    return outcomes


def _one(db: Database, suite: Suite, release: Release, out: Path, repeats: int, prune: bool, progress: Progress,
         reporter: runner.Reporter | None, label: str, force: bool, run: Callable[..., tuple[records.RunRecord, Path]],
         resolve_release: Callable[[Release, Callable[[str], None]], runner.Target]) -> Outcome:  # fmt: skip
    outcome = Outcome(release.version, release.build, "done-before")
    try:
        source = build_source(release)
    except BuildError as e:
        return dataclasses.replace(outcome, status="not-installable", error=str(e))
    stand_in = sim_engine.is_sim_build(release.build)
    done = finished_runs(db, source=source, suite=suite, hardware_label=label,
                         version=release.version if stand_in else None)  # fmt: skip
    if len(done) >= repeats:
        return outcome
    had_env = _env_exists(release)
    try:
        target = resolve_release(release, progress.installing)
    except BuildError as e:
        return dataclasses.replace(outcome, status="not-installable", error=_with_tail(e))
    outcome.status = "ran"
    try:
        for _ in range(repeats - len(done)):
            record, _path = run(suite=suite, target=target, db=db, out=out, reporter=reporter, force=force)
            outcome.runs.append(record.run_id)
            if record.status != "ok":
                outcome.status = "not-ok"
                outcome.error = record.error
            if record.status == "failed":  # it does not start here; more runs would only fail again
                break
    except EngineError as e:
        outcome.status, outcome.error = "not-ok", _with_tail(e)
    if prune and not had_env:
        outcome.env_removed = envs.remove_env(envs.parse_build(release.build)) is not None
    return outcome


def _env_exists(release: Release) -> bool:
    if sim_engine.is_sim_build(release.build):
        return True  # nothing is installed for a stand-in
    return envs.find_env(envs.parse_build(release.build)) is not None


def _with_tail(e: EngineError) -> str:
    """The message and the line of its log tail that gives the reason (uv's `cause:` line of a resolution that
    failed, else the last line), on one line."""
    tail = [line.strip() for line in e.log_tail.strip().splitlines() if line.strip()]
    causes = [line.removeprefix("cause: ") for line in tail if line.startswith("cause:")]
    reason = (causes or tail or [""])[0 if causes else -1]
    return str(e.args[0]) + (f": {reason}" if reason else "")


def summary(outcomes: list[Outcome]) -> str:
    """One line per release, then the totals."""
    lines = []
    for o in outcomes:
        what = {"done-before": "already stored", "ran": f"{len(o.runs)} run(s) stored",
                "not-ok": f"{len(o.runs)} run(s) stored, not ok", "not-installable": "not installable"}[o.status]
        lines.append(f"{o.version:>12}  {what:<28} {o.seconds:7.1f} s" + (f"  {o.error}" if o.error else ""))
    ran = [o for o in outcomes if o.status in ("ran", "not-ok")]
    lines.append(f"{len(outcomes)} releases: {sum(o.status == 'done-before' for o in outcomes)} already stored, "
                 f"{len(ran)} run here, {sum(o.status == 'not-installable' for o in outcomes)} not installable, "
                 f"{sum(o.status == 'not-ok' for o in outcomes)} not ok")  # fmt: skip
    return "\n".join(lines)
