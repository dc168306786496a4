"""Confirm before filing: a finding that `perfci detect` made from the release stream is measured again with
`perfci ab` (its last good build vs its first bad build, interleaved on one runner of its hardware label)
before `perfci report --issue-on-regression` files an issue for it.

A trend can mislead: another day's runner, a noisy neighbour, a driver update between two builds' runs. An
A/B session on one machine, with its A/A guard, cannot be fooled by those. The outcome, stored in
`confirmations` with the session it came from:

- `confirmed`: at least one of the finding's member series is FAIL in the session;
- `not-reproduced`: the finding's representative series (else every member measured) is PASS or IMPROVED;
- `inconclusive`: anything else (machine unstable, the session could not resolve the change, a member not
  measured): measure again, with more blocks.

Only a `confirmed` finding gets an issue; the others are shown as such, and a `not-reproduced` one no longer
fails `perfci detect`. `decide` is pure; `confirm` runs the session; `record` stores one that a runner
measured, judged again from its blocks' run records (in CI the runner never writes the data location).
docs/findings.md describes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from perfci import store
from perfci.errors import ConfigError
from perfci.store import sessions
from perfci.store.records import RunRecord, read_record
from perfci.verdicts import abstats
from perfci.verdicts.findings import Finding, Member
from perfci.verdicts.series import SeriesKey

CONFIRMED, NOT_REPRODUCED, INCONCLUSIVE = "confirmed", "not-reproduced", "inconclusive"
_SIM_DIGEST = re.compile(r"[0-9a-f]{16}")  # a sim model known only by its hash (a bisect trial's)
OUTCOMES = (CONFIRMED, NOT_REPRODUCED, INCONCLUSIVE)


@dataclass(frozen=True, slots=True)
class Confirmation:
    regression_id: int
    session_id: int
    created: str
    outcome: str
    series: str | None  # the member series that decided, as ab names it
    verdict: str | None  # that series' A/B verdict
    change: float | None
    low: float | None
    high: float | None
    mde: float | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def series_name(key: SeriesKey) -> str:
    """How an A/B session names a series (perfci.verdicts.ab.judge_blocks)."""
    return " · ".join((key.model, key.workload, key.load_label, key.metric))


def decide(finding: Finding, *, session_verdict: str, session_reason: str,
           verdicts: Sequence[abstats.SeriesVerdict]) -> tuple[str, abstats.SeriesVerdict | None, str]:  # fmt: skip
    """The outcome of a finding's A/B session: (outcome, the series verdict that decided it, why)."""
    by_name = {v.name: v for v in verdicts}
    members = sorted(finding.members, key=lambda m: (m.pending, m.pvalue, -abs(m.rel_change)))
    measured = [(m, by_name[series_name(m.key)]) for m in members if series_name(m.key) in by_name]
    failed = [(m, v) for m, v in measured if v.verdict == abstats.FAIL]
    if failed:
        _, v = failed[0]
        return CONFIRMED, v, f"{len(failed)} of {len(finding.members)} member series regressed in the A/B session"
    if not measured:
        return INCONCLUSIVE, None, "the A/B session measured none of the finding's series"
    first: tuple[Member, abstats.SeriesVerdict] = measured[0]
    decisive = [first] if first[0] is members[0] else measured
    if all(v.verdict in (abstats.PASS, abstats.IMPROVED) for _, v in decisive):
        return NOT_REPRODUCED, first[1], f"the A/B session does not reproduce it: {first[1].reason}"
    undecided = next(v for _, v in decisive if v.verdict not in (abstats.PASS, abstats.IMPROVED))
    why = session_reason if session_verdict == abstats.INCONCLUSIVE and "unstable" in session_reason else \
        undecided.reason  # fmt: skip
    return INCONCLUSIVE, undecided, f"the A/B session could not decide: {why}"


def spec_of_source(source: str) -> str:
    """The build string `perfci ab` installs, from a run record's build source; a build that cannot be made
    again from its source (a preinstalled interpreter, a sim latency model known only by its hash) raises."""
    kind, _, rest = source.partition(":")
    if kind == "pypi":
        return rest
    if kind == "wheels":
        return rest
    if kind == "git":
        package, _, url_ref = rest.partition("@")
        return f"{package}@git:{url_ref}"
    if kind == "sim" and not _SIM_DIGEST.fullmatch(rest):
        return source  # sim:PATH, named again from the same file (the session checks its version)
    raise ConfigError(f"build source {source!r} cannot be installed again: name the build with "
                      "--baseline-build / --candidate-build (a sim model known by its hash: sim:PATH)")  # fmt: skip


def _source_of(db: Database, finding: Finding, build: str) -> str:
    """The build source of `build` (a label) in the finding's scope."""
    for engine, version, commit, source in store.run_sources(db, engine=finding.engine,
                                                             hardware_label=finding.hardware_label,
                                                             suite=finding.suite):  # fmt: skip
        if _label(engine, version, commit) == build:
            return source
    raise ConfigError(f"finding {finding.id}: no stored run of {build} on {finding.hardware_label} ({finding.suite})")


def _label(engine: str, version: str | None, commit: str | None) -> str:
    from perfci.verdicts.series import build_label

    return build_label(engine, version, commit)


def builds(db: Database, finding: Finding, *, baseline: str | None = None,
           candidate: str | None = None) -> tuple[str, str]:  # fmt: skip
    """The two builds to measure: as given, else from the sources of the finding's stored runs."""
    if finding.last_good is None and baseline is None:
        raise ConfigError(f"finding {finding.id} has no last good build: give --baseline-build")
    return (baseline or spec_of_source(_source_of(db, finding, finding.last_good or "")),
            candidate or spec_of_source(_source_of(db, finding, finding.first_bad)))


def confirm(db: Database, finding: Finding, *, session: Callable[..., Any], machine_label: str,
            baseline: str | None = None, candidate: str | None = None, suite: str | Path | None = None,
            blocks: int, now: str) -> Confirmation:  # fmt: skip
    """Run the finding's A/B session with `session` (perfci.verdicts.ab.run_ab, with everything but the builds and the
    suite bound), check that it measured the finding's builds on its hardware label, store and return the
    outcome."""
    if finding.status != "open":
        raise ConfigError(f"finding {finding.id} is {finding.status}: only an open finding is confirmed")
    if machine_label != finding.hardware_label:
        raise ConfigError(f"finding {finding.id} is on {finding.hardware_label}; this machine is {machine_label}: "
                          "confirm it on a runner of that label")  # fmt: skip
    from perfci import config

    loaded = config.load_suite(suite or finding.suite)
    if loaded.name != finding.suite:
        raise ConfigError(f"suite {suite}: it is {loaded.name!r}, the finding's suite is {finding.suite!r}")
    a, b = builds(db, finding, baseline=baseline, candidate=candidate)
    return _conclude(db, finding, session(baseline=a, candidate=b, suite=loaded, blocks=blocks), now=now)


def record(db: Database, finding: Finding, *, paths: Sequence[Path], now: str) -> Confirmation:
    """The outcome of an A/B session of `finding` that a runner of its hardware label measured (`perfci confirm
    ID --from-records DIR`): its blocks' run records are stored if they are not yet, the session is judged
    again here from them and stored, then its outcome as `confirm` would. A session already recorded from the
    same runs is not recorded twice: its confirmation is returned."""
    if finding.status != "open":
        raise ConfigError(f"finding {finding.id} is {finding.status}: only an open finding is confirmed")
    if finding.last_good is None:
        raise ConfigError(f"finding {finding.id} has no last good build to compare with")
    runs = [read_record(p) for p in paths]
    if not runs:
        raise ConfigError(f"finding {finding.id}: no run records given")
    blocks = blocks_of(finding, runs)
    ids = [r.run_id for r in runs]
    done = sessions.session_of_runs(db, ids)
    if done is not None:
        before = [c for c in latest(db, [finding.id]).values() if c.session_id == done]
        if not before:
            raise ConfigError(f"runs {', '.join(ids)} already belong to A/B session {done}, not to finding "
                              f"{finding.id}")  # fmt: skip
        return before[0]
    for path, run in zip(paths, runs, strict=True):
        store.ingest(db, run, record_path=str(path))  # False (nothing written) when it is stored already
    from perfci.verdicts import ab

    session = ab.record_session(db=db, blocks=blocks, baseline=finding.last_good, candidate=finding.first_bad,
                                suite=finding.suite)  # fmt: skip
    return _conclude(db, finding, session, now=now)


def blocks_of(finding: Finding, runs: Sequence[RunRecord]) -> list[tuple[int, str, RunRecord]]:
    """An A/B session's blocks from its run records: in the order they were made, each the baseline (a run of
    the finding's last good build) or the candidate (its first bad build), all of the finding's suite on its
    hardware label."""
    from perfci.verdicts import ab
    from perfci.verdicts.series import build_label

    arms = {finding.last_good: ab.BASELINE, finding.first_bad: ab.CANDIDATE}
    blocks = []
    for i, run in enumerate(sorted(runs, key=lambda r: r.created)):
        label = build_label(run.build.engine, run.build.version, run.build.commit)
        where = f"run {run.run_id}"
        if label not in arms:
            raise ConfigError(f"{where} is of {label}, neither of finding {finding.id}'s builds "
                              f"({finding.last_good} → {finding.first_bad})")  # fmt: skip
        if run.hardware.label != finding.hardware_label:
            raise ConfigError(f"{where} ran on {run.hardware.label}; finding {finding.id} is on "
                              f"{finding.hardware_label}")  # fmt: skip
        if run.suite.name != finding.suite:
            raise ConfigError(f"{where} is of suite {run.suite.name!r}; finding {finding.id}'s is {finding.suite!r}")
        blocks.append((i, arms[label], run))
    return blocks


def _conclude(db: Database, finding: Finding, s: Any, *, now: str) -> Confirmation:
    """Check that session `s` measured the finding's builds, then decide, store and return the outcome."""
    wanted = (finding.last_good, finding.first_bad)
    if finding.last_good is not None and (s.baseline_build, s.candidate_build) != wanted:
        raise ConfigError(f"A/B session {s.id} measured {s.baseline_build} → {s.candidate_build}, not the finding's "
                          f"{wanted[0]} → {wanted[1]}: nothing is recorded for finding {finding.id}")  # fmt: skip
    outcome, v, reason = decide(finding, session_verdict=s.verdict, session_reason=s.judgement.reason,
                                verdicts=s.judgement.series)  # fmt: skip
    c = Confirmation(finding.id, s.id, now, outcome, v.name if v else None, v.verdict if v else None,
                     v.change if v else None, v.low if v else None, v.high if v else None, v.mde if v else None,
                     reason)  # fmt: skip
    sessions.add_confirmation(db, c.as_dict())
    return c


def latest(db: Database, ids: Sequence[int] | None = None) -> dict[int, Confirmation]:
    """The newest confirmation of each finding whose session measured the finding's own first bad build on its
    hardware label (a finding id reused after a withdrawn one is not fooled)."""
    out = {}
    for row in sessions.confirmations(db):
        if ids is None or row["regression_id"] in ids:
            out[row["regression_id"]] = Confirmation(**{k: row[k] for k in Confirmation.__slots__})
    return out


def pending(db: Database, findings: Sequence[Finding]) -> list[Finding]:
    """Open, trend-confirmed findings that no A/B session has confirmed or ruled out yet (inconclusive ones
    included: they are measured again)."""
    done = latest(db)
    return [f for f in findings if f.status == "open" and f.confirmed
            and (f.id not in done or done[f.id].outcome == INCONCLUSIVE)]  # fmt: skip

