"""Missing data: which series' planned jobs produced no run for too long, decided from (jobs, runs, now)."""

from datetime import UTC, datetime, timedelta

import pytest

from perfci.errors import ConfigError
from perfci.ops.watch import WatchConfig, load_config
from perfci.report.silence import PlannedJob, RunSeen, silent
from perfci.utc import stamp

T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
CONFIG = WatchConfig.model_validate({
    "alerts": {"silent_after_hours": 48},
    "engines": {
        "vllm": {"sources": [{"kind": "pypi"}], "hardware": ["h100", "b200"], "suites": ["smoke", "startup"]},
        "sglang": {"sources": [{"kind": "pypi"}], "hardware": ["h100"], "suites": ["smoke"]},
    },
})  # fmt: skip


def at(hours: float) -> str:
    return stamp(T0 + timedelta(hours=hours))


def job(build: str, hardware: str, suite: str = "smoke", *, first: float = 0, last: float | None = None) -> PlannedJob:
    return PlannedJob(build, hardware, suite, at(first), at(first if last is None else last))


def run(build: str, hardware: str, hours: float) -> RunSeen:
    return RunSeen(f"pypi:{build}", hardware, at(hours))


def test_a_pool_that_ran_nothing_since_jobs_were_handed_out_is_silent_after_the_limit_and_not_before():
    jobs = [job("vllm==0.33.0", "h100"), job("vllm==0.33.0", "b200"), job("vllm==0.33.0", "b200", "startup", first=1)]
    runs = [run("vllm==0.33.0", "h100", 3)]  # h100 answered; b200 never did
    assert silent(CONFIG, jobs, runs, now=T0 + timedelta(hours=47)) == []
    (found,) = silent(CONFIG, jobs, runs, now=T0 + timedelta(hours=48))
    assert (found.package, found.hardware_label, found.since, found.last_run) == ("vllm", "b200", at(0), None)
    assert found.waiting == ("vllm==0.33.0|b200|smoke", "vllm==0.33.0|b200|startup")


def test_silence_is_counted_from_the_newest_run_when_work_was_waiting_before_it():
    jobs = [job("vllm==0.33.0", "h100", first=0, last=24), job("vllm==0.33.1", "h100", first=30)]
    runs = [run("vllm==0.33.0", "h100", 10)]  # an older job ran at 10 h; the re-handed one and a newer one did not
    (found,) = silent(CONFIG, jobs, runs, now=T0 + timedelta(hours=58))
    assert (found.since, found.last_run) == (at(10), at(10))
    assert found.waiting == ("vllm==0.33.0|h100|smoke", "vllm==0.33.1|h100|smoke")
    assert silent(CONFIG, jobs, runs, now=T0 + timedelta(hours=57)) == []


def test_any_run_even_a_failed_one_ends_the_silence_and_old_answered_work_never_starts_one():
    jobs = [job("sglang==0.5.23", "h100")]
    assert silent(CONFIG, jobs, [run("sglang==0.5.23", "h100", 60)], now=T0 + timedelta(hours=61)) == []
    # A month with nothing new to plan is not silence: every job handed out was answered.
    assert silent(CONFIG, jobs, [run("sglang==0.5.23", "h100", 2)], now=T0 + timedelta(days=30)) == []


def test_series_the_config_no_longer_plans_and_runs_of_other_builds_are_not_counted():
    jobs = [job("vllm==0.33.0", "h200"), job("sglang==0.5.23", "h100")]  # h200 was taken out of the config
    runs = [run("vllm==0.33.0", "h100", 5)]  # vllm on h100 says nothing about sglang on h100
    (found,) = silent(CONFIG, jobs, runs, now=T0 + timedelta(hours=49))
    assert (found.package, found.hardware_label) == ("sglang", "h100")


def test_silent_after_hours_must_be_positive_and_alerts_reject_unknown_keys(tmp_path):
    path = tmp_path / "watch.toml"
    engines = '[engines.vllm]\nsources = [{kind = "pypi"}]\nhardware = ["h100"]\nsuites = ["smoke"]\n'
    path.write_text("[alerts]\nsilent_after_hours = 0\n" + engines)
    with pytest.raises(ConfigError, match="silent_after_hours"):
        load_config(path)
    path.write_text("[alerts]\nsilent_after = 48\n" + engines)
    with pytest.raises(ConfigError, match="silent_after"):
        load_config(path)
    path.write_text(engines)
    assert load_config(path).alerts.silent_after_hours == 48
