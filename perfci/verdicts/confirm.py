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
fails `perfci detect`. `decide` is pure; `confirm` runs the session. docs/findings.md describes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from perfci import store
from perfci.errors import ConfigError
from perfci.store import sessions
from perfci.verdicts import abstats
from perfci.verdicts.findings import Finding, Member
from perfci.verdicts.series import SeriesKey

CONFIRMED, NOT_REPRODUCED, INCONCLUSIVE = "confirmed", "not-reproduced", "inconclusive"
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
    raise ConfigError(f"build source {source!r} cannot be installed again: name the build with "
                      "--baseline-build / --candidate-build (a sim model: sim:PATH)")  # fmt: skip


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
    s = session(baseline=a, candidate=b, suite=loaded, blocks=blocks)
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

