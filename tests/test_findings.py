"""Detect passes over a real SQLite store filled with synthesised run records: verdicts, grouping, dedup,
statuses, and the faults (failed runs, missing baselines, missing metrics)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from perfci import metrics, store
from perfci.errors import ConfigError
from perfci.store import ingest
from perfci.store.records import RunRecord, write_record
from perfci.utc import stamp
from perfci.verdicts import findings, series

LOADS = {"c=4": 4.0, "c=8": 8.0}
LATENCY_MS = {"ttft_ms": 40.0, "tpot_ms": 8.0, "itl_ms": 8.0, "e2e_ms": 300.0}


class Clock:
    """Each call is a minute later: run creation times and detect passes in a known order."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def add_build(tmp_db, make_record_dict, clock, tmp_path):
    """Ingest one run of `version`: `repeats` repeats of each load level whose latencies are `slowdown` times
    the base (throughput divided by it) with relative Gaussian `noise`; startup phases likewise."""
    rng = np.random.default_rng(7)

    def add(version, *, slowdown=1.0, repeats=5, noise=0.01, startup_slowdown=1.0, status="ok", loads=LOADS,
            hardware="cpu-2c", point_status=None):  # fmt: skip
        record = make_record_dict(created=stamp(clock()), status=status)
        record["build"] = {"engine": "sim", "version": version, "commit": None, "source": "builtin"}
        record["hardware"]["label"] = hardware
        template = record["points"][0]
        record["points"] = []
        for label, value in loads.items():
            for repeat in range(repeats):
                point = copy.deepcopy(template)
                factor = slowdown * (1 + noise * rng.standard_normal())
                point |= {"index": len(record["points"]), "load_label": label, "repeat": repeat,
                          "status": point_status or ("ok" if status != "failed" else "failed")}  # fmt: skip
                point["load"] = point["load"] | {"value": value}
                point["metrics"] = _metrics(factor) if status != "failed" else {}
                record["points"].append(point)
        for start in record["startups"]:
            factor = startup_slowdown * (1 + noise * rng.standard_normal())
            start["phases"] = {phase: round(seconds * factor, 6) for phase, seconds in start["phases"].items()}
            start["total_s"] = round(start["total_s"] * factor, 6)
        run = RunRecord.model_validate(record)
        ingest(tmp_db, run)
        write_record(run, tmp_path / "records")
        return record["run_id"]

    return add


def _metrics(factor: float) -> dict:
    latencies = {
        name: {stat: base * factor * scale for stat, scale in (("mean", 1.0), ("std", 0.1), ("p50", 0.95),
               ("p90", 1.2), ("p95", 1.3), ("p99", 1.5), ("max", 2.0))}  # fmt: skip
        for name, base in LATENCY_MS.items()
    }
    return {"requests": 20, "completed": 20, "errors": 0, "error_rate": 0.0, "duration_s": 2.0,
            "request_rate": 10.0 / factor, "output_throughput": 1280.0 / factor, "total_throughput": 1920.0 / factor,
            "goodput": None, "slo_met": None, "prompt_tokens_mean": 64.0, "output_tokens_mean": 128.0,
            **latencies}  # fmt: skip


def detect(db, clock, **kwargs) -> findings.DetectReport:
    return findings.detect_pass(db, now=clock, **kwargs)


def test_compare_observations_calls_a_slower_build_a_regression_in_every_direction(tmp_db, add_build):
    a, b = add_build("0.1.0"), add_build("0.2.0", slowdown=1.2)
    obs = series.observations(tmp_db)
    verdicts = {(v.key.load_label, v.key.metric): v for v in
                findings.compare_observations(obs[obs.run_id == a], obs[obs.run_id == b])}  # fmt: skip
    for load in LOADS:
        for metric in ("ttft_ms_p99", "itl_ms_p50", "e2e_ms_mean", "request_rate", "output_throughput"):
            v = verdicts[(load, metric)]
            assert v.verdict == "regression", (load, metric, v)
            assert (v.n_baseline, v.n_candidate) == (5, 5)
    assert verdicts[("c=4", "ttft_ms_p50")].rel_change == pytest.approx(0.2, abs=0.03)
    assert verdicts[("c=4", "request_rate")].rel_change == pytest.approx(-1 / 6, abs=0.03)
    assert verdicts[("c=4", "error_rate")].verdict in ("unchanged", "inconclusive")  # 0 vs 0
    assert ("c=4", "goodput") not in verdicts  # no SLO: not measured, so not a series
    assert verdicts[("cold", "startup.total")].verdict == "inconclusive"  # one start per run


def test_compare_observations_reports_failed_and_missing_series(tmp_db, add_build):
    a = add_build("0.1.0", loads={"c=4": 4.0})
    b = add_build("0.2.0", loads={"c=4": 4.0, "c=8": 8.0})
    c = add_build("0.3.0", status="failed")
    obs = series.observations(tmp_db)
    new_load = {v.key.metric: v.verdict for v in findings.compare_observations(obs[obs.run_id == a], obs[obs.run_id == b])
                if v.key.load_label == "c=8"}  # fmt: skip
    assert set(new_load.values()) == {"no-baseline"} and "ttft_ms_p99" in new_load
    failed = findings.compare_observations(obs[obs.run_id == a], obs[obs.run_id == c])
    assert {v.verdict for v in failed if v.key.workload == "short"} == {"failed"}


def test_verdicts_that_do_not_survive_benjamini_hochberg_become_inconclusive():
    key = series.SeriesKey("sim", "m", "h", "s", "w", "c=4", "ttft_ms_p50")
    raw = [
        findings.SeriesVerdict(key, "regression", pvalue=0.001),
        findings.SeriesVerdict(key, "regression", pvalue=0.04),
        findings.SeriesVerdict(key, "no-baseline"),
        findings.SeriesVerdict(key, "unchanged", pvalue=0.9),
    ]
    out = findings.with_significance(raw, [True, False, False])
    assert [(v.verdict, v.significant) for v in out] == [("regression", True), ("inconclusive", False),
                                                         ("no-baseline", False), ("unchanged", False)]  # fmt: skip


def test_a_slower_release_is_one_finding_with_every_series_it_moved(tmp_db, add_build, clock):
    first = add_build("0.1.0")
    add_build("0.2.0")
    bad = add_build("0.3.0", slowdown=1.15)
    report = detect(tmp_db, clock)

    verdicts = {j.run_id: j.verdict for j in report.judged}
    assert verdicts[first] == "no-baseline"  # said, not silently skipped
    assert verdicts[bad] == "regression"
    (finding,) = report.findings
    assert (finding.last_good, finding.first_bad, finding.status, finding.confirmed) == (
        "sim==0.2.0", "sim==0.3.0", "open", True)  # fmt: skip
    moved = {(m.key.load_label, m.key.metric) for m in finding.members if m.method == "compare"}
    assert {(load, f"{lat}_{stat}") for load in LOADS for lat in LATENCY_MS for stat in metrics.JUDGED_STATS} <= moved
    assert ("c=8", "output_throughput") in moved
    assert finding.rel_change is not None and finding.ci_low <= finding.rel_change <= finding.ci_high
    assert [f.id for f in report.failing] == [finding.id]

    stored = tmp_db.execute("SELECT verdict FROM judged_runs WHERE run_id = ?", [bad]).fetchone()
    assert stored == ("regression",)
    n_regressed = tmp_db.execute("SELECT count(*) FROM verdicts WHERE run_id = ? AND verdict = 'regression'",
                                 [bad]).fetchone()[0]  # fmt: skip
    assert n_regressed == len([m for m in finding.members if m.method == "compare"])


def test_findings_are_deduplicated_across_passes_and_fixed_when_values_return(tmp_db, add_build, clock):
    add_build("0.1.0")
    add_build("0.2.0", slowdown=1.15)
    (finding,) = detect(tmp_db, clock).findings

    again = detect(tmp_db, clock)
    assert again.judged == [] and again.findings == [] and [f.id for f in again.failing] == [finding.id]
    rejudged = detect(tmp_db, clock, rejudge=True)
    assert len(rejudged.judged) == 2 and [f.id for f in rejudged.findings] == [finding.id]

    add_build("0.2.0", slowdown=1.15)  # the same build, measured again: the same change
    seen = detect(tmp_db, clock)
    (same,) = seen.findings
    assert same.id == finding.id and same.first_seen == finding.first_seen and same.last_seen > finding.last_seen
    assert tmp_db["regressions"].count == 1

    add_build("0.3.0")  # back to 0.1.0's speed
    fixed = detect(tmp_db, clock)
    assert [(f.id, f.status, f.fixed_in) for f in fixed.fixed] == [(finding.id, "fixed", "sim==0.3.0")]
    assert fixed.failing == []
    assert findings.regressions(tmp_db, status="fixed")[0].why == "values returned in sim==0.3.0 (perfci detect)"


def test_acknowledging_a_finding_takes_it_out_of_the_gate(tmp_db, add_build, clock):
    add_build("0.1.0")
    add_build("0.2.0", slowdown=1.15)
    (finding,) = detect(tmp_db, clock).failing
    acked = findings.acknowledge(tmp_db, finding.id, why="  expected: new scheduler  ")
    assert (acked.status, acked.why) == ("acknowledged", "expected: new scheduler")
    assert detect(tmp_db, clock).failing == []
    assert findings.regressions(tmp_db, status="acknowledged")[0].why == "expected: new scheduler"
    findings.acknowledge(tmp_db, finding.id, why="noisy host", status="false-positive")
    assert findings.regressions(tmp_db)[0].status == "false-positive"
    with pytest.raises(ConfigError, match="no regression with id 99"):
        findings.acknowledge(tmp_db, 99, why="x")
    with pytest.raises(ConfigError, match="--why"):
        findings.acknowledge(tmp_db, finding.id, why=" ")
    with pytest.raises(ConfigError, match="status 'open'"):
        findings.acknowledge(tmp_db, finding.id, why="x", status="open")


def test_statuses_people_gave_survive_a_rebuild_from_the_records(tmp_path, add_build, clock):
    add_build("0.1.0")
    add_build("0.2.0", slowdown=1.15)
    db_path = tmp_path / "rebuilt.db"  # a store of its own, built from the records the fixture wrote
    store.rebuild(db_path, tmp_path / "records")
    db = store.open_db(db_path)
    (finding,) = detect(db, clock).failing
    findings.acknowledge(db, finding.id, why="expected: new scheduler")
    db.close()

    store.rebuild(db_path, tmp_path / "records")  # e.g. after `perfci data pull`
    db = store.open_db(db_path)
    assert [(f.id, f.status, f.why) for f in findings.regressions(db)] == [(finding.id, "acknowledged",
                                                                             "expected: new scheduler")]  # fmt: skip
    assert detect(db, clock, rejudge=True).failing == []  # judged again from scratch: still acknowledged


def test_a_failed_run_is_judged_failed_and_a_failed_baseline_is_passed_over(tmp_db, add_build, clock):
    add_build("0.1.0")
    broken = add_build("0.2.0", status="failed")
    new = add_build("0.3.0", slowdown=1.15)
    report = detect(tmp_db, clock)
    judged = {j.run_id: j for j in report.judged}
    assert judged[broken].verdict == "failed"
    assert judged[new].baseline.build == "sim==0.1.0" and judged[new].verdict == "regression"
    (finding,) = report.findings
    assert (finding.last_good, finding.first_bad) == ("sim==0.1.0", "sim==0.3.0")


def test_degraded_points_are_never_a_verdict_nor_a_baseline(tmp_db, add_build, clock):
    """A build whose streams were cut short looks faster: its degraded points must not read as an
    improvement, nor become the baseline the next build is judged against."""
    add_build("0.1.0")
    cut = add_build("0.2.0", slowdown=0.5, status="degraded", point_status="degraded")
    new = add_build("0.3.0", slowdown=1.15)
    report = detect(tmp_db, clock)
    judged = {j.run_id: j for j in report.judged}
    point_verdicts = {v.verdict for v in judged[cut].verdicts if v.key.workload != metrics.STARTUP_WORKLOAD}
    assert point_verdicts == {"failed"}
    assert judged[new].baseline.build == "sim==0.1.0" and judged[new].verdict == "regression"
    (finding,) = report.findings
    assert (finding.last_good, finding.first_bad) == ("sim==0.1.0", "sim==0.3.0")


def test_noise_alone_raises_no_finding(tmp_db, add_build, clock):
    for minor in range(8):
        add_build(f"0.{minor}.0", noise=0.02)
    report = detect(tmp_db, clock)
    assert report.findings == [] and report.failing == []
    assert {j.verdict for j in report.judged} <= {"no-baseline", "unchanged", "inconclusive"}


def test_a_chosen_baseline_run(tmp_db, add_build, clock):
    a = add_build("0.1.0")
    b = add_build("0.1.0", slowdown=1.3)  # same build: only a chosen baseline can tell them apart
    report = detect(tmp_db, clock, baseline=a)
    judged = {j.run_id: j for j in report.judged}
    assert judged[a].verdict == "no-baseline"  # a run is not its own baseline
    assert judged[b].verdict == "regression" and judged[b].baseline.label == f"run {a[:8]} (sim==0.1.0)"
    assert [f.first_bad for f in report.failing] == ["sim==0.1.0"]


def test_change_points_find_a_step_across_single_repeat_builds(tmp_db, add_build, clock):
    """One repeat per build: compare cannot decide, the history can; startup phases are series too."""
    for minor in range(20):
        slow = minor >= 7
        add_build(f"0.{minor}.0", repeats=1, slowdown=1.10 if slow else 1.0, startup_slowdown=1.3 if slow else 1.0)
    report = detect(tmp_db, clock)
    (finding,) = report.failing
    assert (finding.last_good, finding.first_bad) == ("sim==0.6.0", "sim==0.7.0")
    assert {m.method for m in finding.members} == {"change-point"}
    assert {"ttft_ms_p50", "e2e_ms_p99", "output_throughput", "startup.total"} <= {m.key.metric for m in finding.members}
    assert not any(m.pending for m in finding.members)
    moved = {m.key.metric: m.rel_change for m in finding.members if m.key.load_label in ("c=4", "cold")}
    assert moved["ttft_ms_p50"] == pytest.approx(0.10, abs=0.02)
    assert moved["output_throughput"] == pytest.approx(-1 / 11, abs=0.02)
    assert moved["startup.total"] == pytest.approx(0.30, abs=0.05)


def test_a_step_at_the_newest_builds_is_pending_until_later_builds_confirm_it(tmp_db, add_build, clock):
    for minor in range(12):
        add_build(f"0.{minor}.0", repeats=1)
    for minor in range(12, 18):  # only the newest 6 builds changed
        add_build(f"0.{minor}.0", repeats=1, slowdown=1.10)
    report = detect(tmp_db, clock)
    (pending,) = report.findings  # every series that moved is in one finding, wherever each one split
    # detect.py locates a change to within a few builds; that accuracy is its own tests' business
    assert pending.first_bad in {f"sim==0.{minor}.0" for minor in range(12 - findings.SNAP_BUILDS, 13)}
    assert (pending.confirmed, report.failing) == (False, [])  # not gating yet
    assert all(m.pending for m in pending.members) and len(pending.members) > 40

    for minor in range(18, 24):  # the new level lasts
        add_build(f"0.{minor}.0", repeats=1, slowdown=1.10)
    (confirmed,) = detect(tmp_db, clock).failing
    assert (confirmed.id, confirmed.confirmed) == (pending.id, True)


def test_a_pending_member_that_later_passes_do_not_see_is_withdrawn(tmp_db):
    member = {"model": "m", "workload": "w", "load_label": "c=4", "metric": "ttft_ms_p50", "method": "change-point",
              "last_good": "sim==0.1.0", "rel_change": 0.1, "ci_low": None, "ci_high": None, "pvalue": 1e-5,
              "pending": True}  # fmt: skip
    scope = ("sim", "cpu-2c", "smoke")
    finding = dict(zip(("engine", "hardware_label", "suite"), scope, strict=True))
    (kept,) = store.save_findings(tmp_db, [finding | {"first_bad": "sim==0.2.0", "members": [member]}], now="t1")
    (gone,) = store.save_findings(tmp_db, [finding | {"first_bad": "sim==0.3.0", "members": [member]}], now="t2")
    findings.acknowledge(tmp_db, kept, why="looking into it")  # a finding someone acted on is never withdrawn
    store.save_findings(tmp_db, [], now="t3", rescanned=[scope])
    assert [f.id for f in findings.regressions(tmp_db)] == [kept]
    store.save_findings(tmp_db, [], now="t4", rescanned=[("sim", "h100", "smoke")])  # another scope: untouched
    assert tmp_db["regression_series"].count == 1 and gone != kept


def test_change_points_a_build_apart_across_series_are_one_change():
    def member(metric, first_bad, method="change-point"):
        key = series.SeriesKey("sim", "m", "cpu-2c", "smoke", "w", "c=4", metric)
        last_good = {"sim==0.4.0": "sim==0.3.0", "sim==0.5.0": "sim==0.4.0", "sim==0.9.0": "sim==0.8.0"}[first_bad]
        return findings.Member(key, method, last_good, first_bad, 0.1, None, None, 1e-6, True)

    order = [f"sim==0.{i}.0" for i in range(10)]
    members = [member("a", "sim==0.4.0"), member("b", "sim==0.5.0"), member("c", "sim==0.5.0"),
               member("d", "sim==0.9.0")]  # fmt: skip
    scope = ("sim", "cpu-2c", "smoke")
    snapped = findings._snapped(members, {scope: order}, {})
    assert sorted((m.key.metric, m.last_good, m.first_bad) for m in snapped) == [
        ("a", "sim==0.4.0", "sim==0.5.0"),  # the majority's build
        ("b", "sim==0.4.0", "sim==0.5.0"),
        ("c", "sim==0.4.0", "sim==0.5.0"),
        ("d", "sim==0.8.0", "sim==0.9.0"),  # too far: another change
    ]
    with_compare = findings._snapped([*members, member("e", "sim==0.4.0", "compare")], {scope: order}, {})
    assert {m.first_bad for m in with_compare if m.key.metric != "d"} == {"sim==0.4.0"}  # a compare's build is exact
    stored = findings._snapped(members, {scope: order}, {scope: {"sim==0.3.0"}})  # a finding found earlier
    assert {(m.last_good, m.first_bad) for m in stored if m.key.metric != "d"} == {("sim==0.2.0", "sim==0.3.0")}


def test_compare_never_counts_the_candidate_run_in_its_own_builds_baseline(tmp_db, add_build):
    """Five runs of a build and one slowed run of the same build: the slowed run against its build is judged
    against the five others only, and one value against five can never be significant, which it says."""
    normal = [add_build("1.0", repeats=1) for _ in range(5)]
    slowed = add_build("1.0", slowdown=1.5, repeats=1)
    result = findings.compare_builds(tmp_db, "sim==1.0", slowed)
    assert result.baseline.run_ids == tuple(normal) and result.candidate.run_ids == (slowed,)
    assert "other runs" in result.baseline.label
    latency = [v for v in result.verdicts if v.key.metric == "ttft_ms_mean"]
    assert latency and all((v.n_baseline, v.n_candidate) == (5, 1) for v in latency)
    assert all(v.verdict == "inconclusive" and v.cannot_decide == "cannot decide: 1 value; need ≥ 5" for v in latency)
    shown = {v["cannot_decide"] for v in result.as_dict()["verdicts"] if v["metric"] == "ttft_ms_mean"}
    assert shown == {"cannot decide: 1 value; need ≥ 5"}


def test_compare_refuses_a_baseline_that_is_only_the_candidate(tmp_db, add_build):
    only = add_build("1.0")
    with pytest.raises(ConfigError, match="holds no run but the candidate's own"):
        findings.compare_builds(tmp_db, "sim==1.0", only)
