"""Findings: which builds changed which series, judged from the store, grouped, and kept with a status.

A detect pass judges every run not judged yet against its baseline (the previous release, or a chosen build
or run), series by series with `detect.compare` on every repeat; then it searches the history of every
series in the scopes those runs belong to with `detect.change_points`. Benjamini–Hochberg runs once over
every test of the pass, so more metrics do not mean more false alarms. Each regression that survives it and
is at least `min_effect` becomes a member of a finding: one change, introduced by one build on one engine,
hardware label and suite, however many series it moved. docs/findings.md describes the rules.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlite_utils import Database

from perfci import store, utc
from perfci.errors import ConfigError
from perfci.verdicts import detect, series
from perfci.verdicts.series import KEY, SCOPE, Selection, SeriesKey

# A run's verdict is the first of these that any of its series got (`failed` also when the run failed).
# Series and run verdicts, worst first: reports count and sort by this order.
VERDICTS = ("regression", "failed", "improvement", "inconclusive", "no-baseline", "unchanged")


def worst(verdicts: Iterable[str]) -> str | None:
    """The worst of some series' verdicts. A series new in the candidate (`no-baseline`) does not make a run
    that has a baseline `no-baseline`: it counts only when no series was compared."""
    present = set(verdicts)
    return next((v for v in VERDICTS if v in present and v != "no-baseline"), "no-baseline" if present else None)
STATUSES = store.REGRESSION_STATUSES
MIN_EFFECT = detect.MIN_EFFECT
FDR = 0.05  # Benjamini–Hochberg's q over the tests of one pass
# change_points tests nothing in fewer than twice its min_size builds (read here, so detect.py keeps the value).
_CP_MIN_SIZE = inspect.signature(detect.change_points).parameters["min_size"].default
SNAP_BUILDS = 3  # change points this close across series are one change (the accuracy detect.py is held to)
_MATCH = [c for c in KEY if c != "engine"]  # compare matches series across engines: vllm vs sglang is a question


@dataclass(frozen=True)
class SeriesVerdict:
    """One series of a candidate against its baseline: every repeat on each side (medians shown)."""

    key: SeriesKey
    verdict: str  # regression | improvement | unchanged | inconclusive | no-baseline | failed
    baseline: float | None = None  # median of the baseline's repeats
    candidate: float | None = None
    rel_change: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    pvalue: float | None = None
    n_baseline: int = 0
    n_candidate: int = 0
    significant: bool = False  # survived Benjamini–Hochberg over its family
    needed: int | None = None  # candidate values the test needs to ever decide (detect.Verdict.needed)

    @property
    def cannot_decide(self) -> str | None:
        return detect.cannot_decide(self.n_candidate, self.needed)

    def as_dict(self) -> dict[str, Any]:
        fields = {k: v for k, v in asdict(self).items() if k != "key"}
        return _json_ready(asdict(self.key) | fields | {"cannot_decide": self.cannot_decide})


@dataclass(frozen=True)
class Comparison:
    baseline: Selection
    candidate: Selection
    verdicts: list[SeriesVerdict]

    def as_dict(self) -> dict[str, Any]:
        return {"baseline": asdict(self.baseline), "candidate": asdict(self.candidate),
                "verdicts": [v.as_dict() for v in self.verdicts]}  # fmt: skip


@dataclass(frozen=True)
class Member:
    """A series a finding moved, as one method saw it (`compare` against a baseline, or `change-point`)."""

    key: SeriesKey
    method: str
    last_good: str | None
    first_bad: str
    rel_change: float
    ci_low: float | None
    ci_high: float | None
    pvalue: float
    pending: bool  # a change point at the newest builds that later builds have yet to confirm

    def as_dict(self) -> dict[str, Any]:
        return _json_ready(asdict(self.key) | {k: v for k, v in asdict(self).items() if k != "key"})


@dataclass(frozen=True)
class Finding:
    """A stored regression: one build's change on one engine, hardware label and suite, with its members."""

    id: int
    engine: str
    hardware_label: str
    suite: str
    last_good: str | None
    first_bad: str
    rel_change: float | None  # of the representative member: confirmed first, then the smallest p-value
    ci_low: float | None
    ci_high: float | None
    pvalue: float | None
    confirmed: bool
    status: str
    why: str | None
    fixed_in: str | None
    first_seen: str
    last_seen: str
    members: tuple[Member, ...]
    ab: Any = None  # the newest perfci.verdicts.confirm.Confirmation: the A/B re-measurement, when there is one

    @property
    def ab_outcome(self) -> str | None:
        return self.ab.outcome if self.ab is not None else None

    @property
    def representative(self) -> Member | None:
        """The member `rel_change`, `ci_*` and `pvalue` come from (the store summarises in this order)."""
        return min(self.members, key=lambda m: (m.pending, m.pvalue, -abs(m.rel_change)), default=None)

    def as_dict(self) -> dict[str, Any]:
        fields = {k: v for k, v in asdict(self).items() if k not in ("members", "ab")}
        ab = _json_ready(self.ab.as_dict()) if self.ab is not None else None
        return _json_ready(fields) | {"ab": ab, "members": [m.as_dict() for m in self.members]}


@dataclass(frozen=True)
class RunJudgement:
    run_id: str
    build: str
    scope: tuple[str, str, str]  # engine, hardware label, suite
    run_status: str  # the run record's: ok | degraded | failed
    baseline: Selection | None
    verdicts: list[SeriesVerdict]

    @property
    def verdict(self) -> str:
        """`failed` for a failed run, `no-baseline` without one, else the worst verdict its series got."""
        if self.run_status == "failed":
            return "failed"
        if self.baseline is None:
            return "no-baseline"
        return worst(v.verdict for v in self.verdicts) or "no-baseline"

    def counts(self) -> dict[str, int]:
        return dict(Counter(v.verdict for v in self.verdicts))

    def as_dict(self) -> dict[str, Any]:
        baseline = None if self.baseline is None else asdict(self.baseline)
        return {"run_id": self.run_id, "build": self.build, **dict(zip(SCOPE, self.scope, strict=True)),
                "run_status": self.run_status, "baseline": baseline, "verdict": self.verdict,
                "counts": self.counts(), "verdicts": [v.as_dict() for v in self.verdicts]}  # fmt: skip


@dataclass(frozen=True)
class DetectReport:
    judged: list[RunJudgement]
    findings: list[Finding]  # those this pass saw
    fixed: list[Finding]  # those this pass found fixed
    failing: list[Finding]  # every open, confirmed regression in the store: what fails the gate

    def as_dict(self) -> dict[str, Any]:
        return {"judged": [j.as_dict() for j in self.judged], "findings": [f.as_dict() for f in self.findings],
                "fixed": [f.as_dict() for f in self.fixed], "failing": [f.id for f in self.failing]}  # fmt: skip


def compare_observations(baseline: pd.DataFrame, candidate: pd.DataFrame, *,
                         min_effect: float = MIN_EFFECT) -> list[SeriesVerdict]:  # fmt: skip
    """Every series of `candidate` (series.observations rows) against the same series of `baseline`.

    Series match on their key without the engine. A series the candidate did not measure (no value in any ok
    point, e.g. goodput without an SLO) is left out; one whose points all failed is `failed`; one the
    baseline has no value for is `no-baseline`. Verdicts are raw: see `with_significance`.
    """
    base = _by_series(baseline)
    verdicts = []
    for match, (engine, values, failed) in sorted(_by_series(candidate).items()):
        key = SeriesKey(engine, *match)
        if values.size == 0:
            if failed:
                verdicts.append(SeriesVerdict(key, "failed"))
            continue
        reference = base[match][1] if match in base else np.empty(0)
        if reference.size == 0:
            verdicts.append(SeriesVerdict(key, "no-baseline", candidate=_median(values), n_candidate=values.size))
            continue
        v = detect.compare(reference, values, higher_is_better=key.higher_is_better, min_effect=min_effect)
        verdicts.append(SeriesVerdict(key, v.verdict, _median(reference), _median(values), v.rel_change, v.ci_low,
                                      v.ci_high, v.pvalue, v.n_baseline, v.n_candidate, needed=v.needed))  # fmt: skip
    return verdicts


def _by_series(observations: pd.DataFrame) -> dict[tuple, tuple[str, np.ndarray, bool]]:
    """For each series (key without the engine): its engine, its finite values from ok rows, and whether any
    row failed. A plain loop: pandas' per-group overhead would be most of the cost over many small series."""
    engines: dict[tuple, str] = {}
    values: dict[tuple, list[float]] = defaultdict(list)
    failed: set[tuple] = set()
    for engine, *rest, ok, value in observations[["engine", *_MATCH, "ok", "value"]].itertuples(index=False, name=None):
        match = tuple(rest)
        engines.setdefault(match, engine)
        if not ok:
            failed.add(match)
        elif math.isfinite(value):
            values[match].append(value)
    return {m: (engine, np.array(values[m], dtype=float), m in failed) for m, engine in engines.items()}


def _values(group: pd.DataFrame) -> np.ndarray:
    values = group.loc[group["ok"], "value"].to_numpy(dtype=float)
    return values[np.isfinite(values)]


def _median(values: np.ndarray) -> float:
    return float(np.median(values))


def with_significance(verdicts: list[SeriesVerdict], flags: Iterable[bool]) -> list[SeriesVerdict]:
    """Apply Benjamini–Hochberg flags (one per verdict with a p-value, in order): a regression or improvement
    that does not survive becomes `inconclusive`."""
    flags = iter(flags)
    out = []
    for v in verdicts:
        if v.pvalue is None:
            out.append(v)
            continue
        significant = next(flags)
        unproven = not significant and v.verdict in ("regression", "improvement")
        out.append(replace(v, significant=significant, verdict="inconclusive" if unproven else v.verdict))
    return out


def _pvalue(p: float | None) -> float:
    return 1.0 if p is None or not math.isfinite(p) else p


def compare_builds(db: Database, baseline: str, candidate: str, *, metrics: Iterable[str] = (),
                   min_effect: float = MIN_EFFECT, q: float = FDR) -> Comparison:  # fmt: skip
    """`perfci compare A B`: two builds or runs (series.SPEC_HELP), every series they share, or only metrics
    matching the `metrics` globs; Benjamini–Hochberg over the series compared. The candidate's runs are never
    part of the baseline (a run compared with its own build is compared with the build's other runs)."""
    runs = series.runs(db)
    b = series.resolve(runs, candidate)
    whole = series.resolve(runs, baseline)
    a = whole.without(*b.run_ids)
    if not a.run_ids:
        raise ConfigError(f"baseline {baseline!r} holds no run but the candidate's own ({b.label}): "
                          "give a baseline with other runs")  # fmt: skip
    if a != whole:
        a = replace(a, label=f"{a.label} (other runs)")
    obs = series.observations(db, run_ids=dict.fromkeys(a.run_ids + b.run_ids))
    if metrics:
        chosen = obs["metric"].map(lambda m: any(fnmatch.fnmatchcase(m, g) for g in metrics))
        if not chosen.any():
            known = ", ".join(sorted(obs["metric"].unique()))
            raise ConfigError(f"no metric matches {', '.join(metrics)}; stored metrics: {known}")
        obs = obs[chosen]
    raw = compare_observations(obs[obs["run_id"].isin(a.run_ids)], obs[obs["run_id"].isin(b.run_ids)],
                               min_effect=min_effect)  # fmt: skip
    flags = detect.benjamini_hochberg([_pvalue(v.pvalue) for v in raw if v.pvalue is not None], q=q)
    return Comparison(a, b, with_significance(raw, flags))


def detect_pass(db: Database, *, baseline: str | None = None, rejudge: bool = False, min_effect: float = MIN_EFFECT,
                q: float = FDR, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> DetectReport:  # fmt: skip
    """`perfci detect`: judge the runs not judged yet (every run with `rejudge`) against their baselines,
    search the history of every series in their scopes for change points, store verdicts and findings, and
    mark findings fixed whose series came back. `baseline` (series.SPEC_HELP) replaces the previous release."""
    stamp = utc.stamp(now())
    runs = series.runs(db)
    done = set() if rejudge else store.judged_run_ids(db)
    todo = runs[~runs["run_id"].isin(done)]
    chosen = series.resolve(runs, baseline) if baseline is not None else None
    if todo.empty:
        return DetectReport([], [], [], _failing(db))
    obs = series.observations(db)
    by_run = dict(tuple(obs.groupby("run_id", sort=False)))
    judged = [_judge(run, runs, by_run, chosen, min_effect) for run in todo.itertuples(index=False)]
    scopes = sorted({j.scope for j in judged})
    histories = [series.history(obs[_in_scope(obs, scope)]) for scope in scopes]
    shifts = [shift for h in histories for shift in _shifts(h, min_effect)]

    # One family: every compare with a p-value, every change point, and a p of 1 for each series searched
    # that had none (it counts as a test; its own p-value is above anything BH would reject). A series too
    # short for change_points to test anything is no test.
    tested = [v.pvalue for j in judged for v in j.verdicts if v.pvalue is not None]
    searched = sum(int((h.notna().sum(axis=1) >= 2 * _CP_MIN_SIZE).sum()) for h in histories)
    quiet = searched - len({s.key for s in shifts})
    family = [_pvalue(p) for p in tested] + [s.pvalue for s in shifts] + [1.0] * quiet
    flags = iter(detect.benjamini_hochberg(family, q=q))
    judged = [_with_flags(j, flags) for j in judged]
    significant_shifts = [s for s in shifts if next(flags)]

    members = [m for j in judged for m in _compare_members(j)]
    members += [_shift_member(s) for s in significant_shifts if s.verdict == "regression"]
    orders = {scope: list(h.columns) for scope, h in zip(scopes, histories, strict=True)}
    known: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for f in regressions(db):
        known[(f.engine, f.hardware_label, f.suite)].add(f.first_bad)
    ids = store.save_findings(db, _group(_snapped(members, orders, known)), now=stamp, rescanned=scopes)
    verdict_rows = [_verdict_row(j, v) for j in judged for v in j.verdicts]
    store.save_judgements(db, [_judged_row(j, stamp) for j in judged], verdict_rows)
    fixed = _mark_fixed(db, obs, scopes, min_effect)
    seen = {f.id: f for f in regressions(db, ids=ids)}
    return DetectReport(judged, [seen[i] for i in dict.fromkeys(ids) if i in seen], fixed, _failing(db))


def _in_scope(frame: pd.DataFrame, scope: tuple[str, str, str]) -> pd.Series:
    return (frame[list(SCOPE)] == pd.Series(scope, index=list(SCOPE))).all(axis=1)


def _judge(run: Any, runs: pd.DataFrame, by_run: dict[str, pd.DataFrame], chosen: Selection | None,
           min_effect: float) -> RunJudgement:  # fmt: skip
    scope = (run.engine, run.hardware_label, run.suite)
    selection = chosen.without(run.run_id) if chosen is not None else series.previous_release(runs, run.run_id)
    if selection is not None and not selection.run_ids:
        selection = None  # the chosen baseline is this run itself
    empty = pd.DataFrame(columns=series.OBSERVATION_COLUMNS)
    reference = pd.concat([by_run.get(r, empty) for r in (selection.run_ids if selection else ())] or [empty])
    verdicts = compare_observations(reference, by_run.get(run.run_id, empty), min_effect=min_effect)
    return RunJudgement(run.run_id, run.build, scope, run.status, selection, verdicts)


def _with_flags(judgement: RunJudgement, flags: Iterator[bool]) -> RunJudgement:
    n = sum(v.pvalue is not None for v in judgement.verdicts)
    return replace(judgement, verdicts=with_significance(judgement.verdicts, [next(flags) for _ in range(n)]))


@dataclass(frozen=True)
class _Shift:
    key: SeriesKey
    last_good: str | None
    first_bad: str
    rel_change: float
    pvalue: float
    pending: bool
    verdict: str  # regression | improvement, in the metric's direction


def _shifts(history: pd.DataFrame, min_effect: float) -> list[_Shift]:
    builds = list(history.columns)
    shifts = []
    for index, values in zip(history.index, history.to_numpy(dtype=float), strict=True):
        key = SeriesKey(*index)
        for cp in detect.change_points(values, higher_is_better=key.higher_is_better, min_effect=min_effect):
            before = [b for b, v in zip(builds[: cp.index], values[: cp.index], strict=True) if not math.isnan(v)]
            last_good = before[-1] if before else None
            shifts.append(_Shift(key, last_good, builds[cp.index], cp.rel_change, _pvalue(cp.pvalue), cp.pending,
                                 cp.verdict))  # fmt: skip
    return shifts


def _compare_members(judgement: RunJudgement) -> list[Member]:
    return [
        Member(v.key, "compare", judgement.baseline.build, judgement.build, v.rel_change, v.ci_low, v.ci_high,
               v.pvalue, pending=False)  # fmt: skip
        for v in judgement.verdicts
        if v.verdict == "regression"  # significant: BH has turned the others inconclusive
    ]


def _shift_member(shift: _Shift) -> Member:
    return Member(shift.key, "change-point", shift.last_good, shift.first_bad, shift.rel_change, None, None,
                  shift.pvalue, shift.pending)  # fmt: skip


def _snapped(members: list[Member], orders: dict[tuple[str, str, str], list[str]],
             known: dict[tuple[str, str, str], set[str]]) -> list[Member]:  # fmt: skip
    """Change points of one change land within a few builds of each other, across series and across passes
    (noise moves where a series splits best). Members of a scope whose first bad builds lie within
    SNAP_BUILDS of the first of a cluster are moved to one first bad build, with its last good build, so the
    change is one finding: a compare's candidate build if there is one (it is exact), else that of a stored
    finding (`known`) within SNAP_BUILDS of the cluster's most common one, else the most common one."""
    by_scope: dict[tuple[str, str, str], list[Member]] = defaultdict(list)
    for m in members:
        by_scope[(m.key.engine, m.key.hardware_label, m.key.suite)].append(m)
    out = []
    for scope, group in by_scope.items():
        order = orders.get(scope, [])
        out += [m for m in group if m.first_bad not in order]  # a build with no place in the series
        placed = sorted(((order.index(m.first_bad), m) for m in group if m.first_bad in order), key=lambda p: p[0])
        clusters: list[list[tuple[int, Member]]] = []
        for position, m in placed:
            if clusters and position - clusters[-1][0][0] <= SNAP_BUILDS:
                clusters[-1].append((position, m))
            else:
                clusters.append([(position, m)])
        stored = [order.index(b) for b in known.get(scope, ()) if b in order]
        for cluster in clusters:
            votes = Counter(m.first_bad for _, m in cluster)
            exact = {m.first_bad for _, m in cluster if m.method == "compare"}
            first_bad = max(votes, key=lambda b: (b in exact, votes[b], -order.index(b)))
            at = order.index(first_bad)
            near = [p for p in stored if abs(p - at) <= SNAP_BUILDS]
            if not exact and near:
                first_bad = order[min(near, key=lambda p: abs(p - at))]
            last_good = next((m.last_good for _, m in cluster if m.first_bad == first_bad),
                             order[order.index(first_bad) - 1] if order.index(first_bad) else None)  # fmt: skip
            out += [replace(m, first_bad=first_bad, last_good=last_good) if m.first_bad != first_bad else m
                    for _, m in cluster]  # fmt: skip
    return out


def _group(members: list[Member]) -> list[dict[str, Any]]:
    """One finding per (engine, hardware label, suite, first bad build): every percentile of every load
    level that one build moved is one change."""
    groups: dict[tuple[str, ...], list[Member]] = defaultdict(list)
    for m in members:
        groups[(m.key.engine, m.key.hardware_label, m.key.suite, m.first_bad)].append(m)
    return [
        {"engine": engine, "hardware_label": hardware, "suite": suite, "first_bad": first_bad,
         "members": [_member_row(m) for m in group]}  # fmt: skip
        for (engine, hardware, suite, first_bad), group in groups.items()
    ]


def _member_row(m: Member) -> dict[str, Any]:
    return {"model": m.key.model, "workload": m.key.workload, "load_label": m.key.load_label,
            "metric": m.key.metric, "method": m.method, "last_good": m.last_good, "rel_change": m.rel_change,
            "ci_low": m.ci_low, "ci_high": m.ci_high, "pvalue": m.pvalue, "pending": m.pending}  # fmt: skip


def _judged_row(j: RunJudgement, stamp: str) -> dict[str, Any]:
    return {"run_id": j.run_id, "judged_at": stamp, "baseline": j.baseline.label if j.baseline else None,
            "baseline_runs": json.dumps(list(j.baseline.run_ids)) if j.baseline else None,
            "verdict": j.verdict}  # fmt: skip


def _verdict_row(j: RunJudgement, v: SeriesVerdict) -> dict[str, Any]:
    return {"run_id": j.run_id, "model": v.key.model, "workload": v.key.workload, "load_label": v.key.load_label,
            "metric": v.key.metric, "verdict": v.verdict, "rel_change": _finite(v.rel_change),
            "ci_low": _finite(v.ci_low), "ci_high": _finite(v.ci_high), "pvalue": _finite(v.pvalue),
            "significant": v.significant, "n_baseline": v.n_baseline, "n_candidate": v.n_candidate}  # fmt: skip


def _mark_fixed(db: Database, obs: pd.DataFrame, scopes: list[tuple[str, str, str]],
                min_effect: float) -> list[Finding]:  # fmt: skip
    """Open or acknowledged findings whose every member series, in the newest build after the first bad one
    that measured it, is again unchanged (or better) against the last good build."""
    fixed = []
    for finding in regressions(db):
        scope = (finding.engine, finding.hardware_label, finding.suite)
        if finding.status not in ("open", "acknowledged") or scope not in scopes:
            continue
        fixed_in = _recovered_in(finding, obs[_in_scope(obs, scope)], min_effect)
        if fixed_in is not None:
            why = finding.why or f"values returned in {fixed_in} (perfci detect)"
            store.set_regression_status(db, finding.id, "fixed", why=why, fixed_in=fixed_in)
            fixed.append(replace(finding, status="fixed", why=why, fixed_in=fixed_in))
    return fixed


def _recovered_in(finding: Finding, obs: pd.DataFrame, min_effect: float) -> str | None:
    """The newest build after the first bad one, if in it every member series that it measured has come back:
    no longer a regression against the last good build, and either unchanged (or better) against it or an
    improvement on the first bad build. (A 99% interval from a few repeats is often too wide to call
    `unchanged` alone, while the way back from the bad build is as large as the regression was.)"""
    order = series.ordered_builds(obs)
    if finding.first_bad not in order:
        return None
    later = order[order.index(finding.first_bad) + 1 :]
    newest: list[str] = []
    for m in finding.members:
        k = m.key
        mine = obs[(obs["model"] == k.model) & (obs["workload"] == k.workload) & (obs["load_label"] == k.load_label)
                   & (obs["metric"] == k.metric)]  # fmt: skip
        good, bad = (_values(mine[mine["build"] == b]) for b in (m.last_good, m.first_bad))
        after = [(b, v) for b in later if (v := _values(mine[mine["build"] == b])).size]
        if good.size == 0 or not after:
            continue
        build, values = after[-1]
        back = detect.compare(good, values, higher_is_better=k.higher_is_better, min_effect=min_effect).verdict
        undone = bad.size > 0 and detect.compare(bad, values, higher_is_better=k.higher_is_better,
                                                 min_effect=min_effect).verdict == "improvement"  # fmt: skip
        if back == "regression" or not (back in ("unchanged", "improvement") or undone):
            return None
        newest.append(build)
    return max(newest, key=order.index) if newest else None


def regressions(db: Database, *, status: str | None = None, ids: Iterable[int] | None = None) -> list[Finding]:
    """Stored findings with their members, newest first."""
    frame = store.regressions_frame(db, status=status, ids=ids)
    members: dict[int, list[Member]] = defaultdict(list)
    for row in store.regression_members_frame(db, frame["id"]).itertuples(index=False):
        key = SeriesKey(row.engine, row.model, row.hardware_label, row.suite, row.workload, row.load_label, row.metric)
        members[row.regression_id].append(
            Member(key, row.method, row.last_good, row.first_bad, row.rel_change, _finite(row.ci_low),
                   _finite(row.ci_high), row.pvalue, bool(row.pending))  # fmt: skip
        )
    from perfci.verdicts import confirm  # it builds on this module

    ab = confirm.latest(db)
    return [
        Finding(int(r.id), r.engine, r.hardware_label, r.suite, r.last_good, r.first_bad, _finite(r.rel_change),
                _finite(r.ci_low), _finite(r.ci_high), _finite(r.pvalue), bool(r.confirmed), r.status, r.why,
                r.fixed_in, r.first_seen, r.last_seen, tuple(members[r.id]), ab.get(int(r.id)))  # fmt: skip
        for r in frame.itertuples(index=False)
    ]


def _failing(db: Database) -> list[Finding]:
    """Open findings that later builds confirmed, unless an A/B session on their hardware ruled them out."""
    return [f for f in regressions(db, status="open") if f.confirmed and f.ab_outcome != "not-reproduced"]


def acknowledge(db: Database, regression_id: int, *, why: str, status: str = "acknowledged") -> Finding:
    """`perfci ack`: give a finding a status other than open, saying why."""
    if not why.strip():
        raise ConfigError("--why must say why (it is kept with the finding)")
    if status not in STATUSES or status == "open":
        raise ConfigError(f"status {status!r}: one of {', '.join(s for s in STATUSES if s != 'open')}")
    found = regressions(db, ids=[regression_id])
    if not found:
        raise ConfigError(f"no regression with id {regression_id} (see `perfci regressions`)")
    finding = found[0]
    store.set_regression_status(db, regression_id, status, why=why.strip(), fixed_in=finding.fixed_in)
    return replace(finding, status=status, why=why.strip())


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _json_ready(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: _finite(v) if isinstance(v, float) else v for k, v in fields.items()}
