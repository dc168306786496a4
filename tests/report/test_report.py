"""`perfci report` end to end: real `perfci run --engine sim` runs (one with a slower decode) in a real SQLite
store, `perfci detect`, hand-inserted bisect rows, and a fake GitHub over real HTTP (tests/github_fake.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from perfci.cli.main import cli
from perfci.report import summary
from perfci.store import open_db
from tests.github_fake import BOT, INSTALLATION_TOKEN, NAME, OWNER, USER_TOKEN, install

SHA = "feedfacefeedfacefeedfacefeedfacefeedface"
DASHBOARD = "https://perf.example.org"
SUITE = """
name = "report-e2e"
[[models]]
name = "m"
[[workloads]]
name = "w"
prompt_tokens = 16
output_tokens = 8
load = { concurrency = [2] }
[run]
requests = 6
warmup_requests = 1
repeats = 5
[startup]
caches = ["cold", "warm"]
[sim]
startup_s = 0.1
"""


def perfci(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfci", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def detected(tmp_path_factory):
    """Two sim runs, the second decoding ten times as slowly, judged by `perfci detect` against the first."""
    d = tmp_path_factory.mktemp("report")
    (d / "t.toml").write_text(SUITE)
    run_ids = []
    for decode_ms in (2, 20):  # ten times slower: a difference no load on the machine can hide
        done = perfci("run", "--suite", "t.toml", "--engine", "sim", "--sim", f"decode_ms_per_token={decode_ms}",
                      "--db", "x.db", "--out", "runs", "--json", cwd=d)  # fmt: skip
        assert done.returncode == 0, done.stderr
        run_ids.append(json.loads(done.stdout)["run_id"])
    gated = perfci("detect", "--all", "--baseline", run_ids[0][:8], "--db", "x.db", "--json", cwd=d)
    assert gated.returncode == 1, gated.stderr  # the slower run is a confirmed regression
    (finding,) = json.loads(gated.stdout)["findings"]
    return d, run_ids, finding["id"]


@pytest.fixture
def db_path(detected, tmp_path):
    """A copy of the detected store, for a test to change."""
    shutil.copy(detected[0] / "x.db", tmp_path / "x.db")
    return tmp_path / "x.db"


@pytest.fixture
def fake(httpserver):
    fake = install(httpserver)
    fake.add_pull_request(7, SHA)
    return fake


def report(db_path, *args, fake=None, token=INSTALLATION_TOKEN, step_summary=None):
    env = {"GITHUB_TOKEN": token, "GITHUB_STEP_SUMMARY": str(step_summary) if step_summary else None,
           "GITHUB_API_URL": fake.api if fake else None, "GITHUB_REPOSITORY": f"{OWNER}/{NAME}" if fake else None,
           "GITHUB_SERVER_URL": None, "GITHUB_RUN_ID": None}  # fmt: skip
    return CliRunner().invoke(cli, ["report", "--db", str(db_path), *args], env=env)


def test_reporting_twice_on_a_pull_request_leaves_one_comment_with_the_newer_summary(detected, db_path, fake,
                                                                                       tmp_path):  # fmt: skip
    _, (fast, slow), _ = detected
    step_summary = tmp_path / "step-summary.md"
    first = report(db_path, "--pr", "7", "--baseline", fast, "--candidate", slow, "--summary", "--dashboard-url",
                   DASHBOARD, fake=fake, step_summary=step_summary)  # fmt: skip
    assert first.exit_code == 0, first.output
    (comment,) = fake.comments_on(7)
    assert "🔴" in comment["body"] and f"{DASHBOARD}/runs/{slow}.html" in comment["body"]
    assert f"run {slow[:8]}" in comment["body"].splitlines()[1]
    assert step_summary.read_text().startswith("## perfci: ") and "🔴" in step_summary.read_text()

    second = report(db_path, "--pr", "7", "--baseline", slow, "--candidate", fast, fake=fake)
    assert second.exit_code == 0, second.output
    (newer,) = fake.comments_on(7)
    assert newer["id"] == comment["id"] and newer["user"]["login"] == BOT
    assert f"run {fast[:8]}" in newer["body"].splitlines()[1] and "🟢" in newer["body"] and "🔴" not in newer["body"]
    assert [(s["sha"], s["state"], s["context"]) for s in fake.statuses] == [(SHA, "failure", "perfci"),
                                                                              (SHA, "success", "perfci")]  # fmt: skip
    assert fake.statuses[0]["target_url"] == f"{DASHBOARD}/index.html"
    assert [(r["head_sha"], r["conclusion"]) for r in fake.check_runs] == [(SHA, "failure"), (SHA, "success")]
    assert fake.check_runs[0]["output"]["summary"].startswith("## perfci: ")


def test_a_user_token_gets_a_status_but_no_check_run(detected, db_path, fake):
    _, (fast, slow), _ = detected
    done = report(db_path, "--pr", "7", "--baseline", fast, "--candidate", slow, fake=fake, token=USER_TOKEN)
    assert done.exit_code == 0, done.output
    assert len(fake.statuses) == 1 and fake.check_runs == [] and len(fake.comments_on(7)) == 1


def confirm_by_hand(db_path, finding_id: int, outcome: str) -> None:
    """What `perfci confirm` stores after an A/B session (tests/test_confirm.py runs the real one)."""
    db = open_db(db_path)
    f = db["regressions"].get(finding_id)
    session = db["ab_sessions"].insert({
        "created": "2026-11-27T02:00:00Z", "finished": "2026-11-27T02:20:00Z", "status": "done",
        "baseline": "sim:a.toml", "candidate": "sim:b.toml", "baseline_build": f["last_good"],
        "candidate_build": f["first_bad"], "suite": f["suite"], "hardware_label": f["hardware_label"], "blocks": 8,
        "alpha": 0.05, "min_effect": 0.02, "verdict": "FAIL" if outcome == "confirmed" else "PASS", "reason": "",
    }).last_pk  # fmt: skip
    db["confirmations"].insert({"regression_id": finding_id, "session_id": session, "created": "2026-11-27T02:20:00Z",
                                "outcome": outcome, "reason": "by hand"})  # fmt: skip
    db.close()


def test_a_finding_no_ab_session_reproduced_gets_no_issue(detected, db_path, fake):
    _, _, finding_id = detected
    assert report(db_path, "--issue-on-regression", fake=fake).exit_code == 0
    confirm_by_hand(db_path, finding_id, "not-reproduced")
    done = report(db_path, "--issue-on-regression", fake=fake)
    assert done.exit_code == 0, done.output
    assert [n for n in fake.issues if n != 7] == []


def test_a_detected_regression_opens_one_issue_that_later_runs_update_and_close(detected, db_path, fake):
    _, _, finding_id = detected
    confirm_by_hand(db_path, finding_id, "confirmed")
    first = report(db_path, "--issue-on-regression", "--dashboard-url", DASHBOARD, fake=fake)
    assert first.exit_code == 0, first.output
    (issue,) = [i for n, i in fake.issues.items() if n != 7]
    assert [label["name"] for label in issue["labels"]] == ["perfci", "performance-regression"]
    assert issue["title"].startswith("sim==") and " worse on " in issue["title"] and "bisected" not in issue["title"]
    assert "<!-- perfci:finding sim/" in issue["body"] and f"finding #{finding_id}" in issue["body"]

    db = open_db(db_path)
    db["bisects"].insert({
        "id": 1, "created": "2026-11-27T03:00:00Z", "updated": "2026-11-27T03:30:00Z", "status": "done",
        "outcome": "culprit", "driver": "commits", "engine": "sim", "hardware_label": "cpu", "suite": "report-e2e",
        "workload": "w", "load_label": "c=2", "metric": "tpot_ms_p50", "higher_is_better": False, "good": "sim@1111111",
        "bad": "sim@9999999", "culprit": "sim@5555555", "culprit_subject": "Decode one token at a time",
        "culprit_url": "https://github.com/example/sim/commit/5555555", "confidence": 0.96, "rel_change": 0.98,
        "trials": 18, "regression_id": finding_id, "spec": "{}",
    })  # fmt: skip
    db.close()
    second = report(db_path, "--issue-on-regression", "--dashboard-url", DASHBOARD, fake=fake)
    assert second.exit_code == 0, second.output
    (updated,) = [i for n, i in fake.issues.items() if n != 7]
    assert updated["number"] == issue["number"] and updated["state"] == "open"
    assert updated["title"].endswith("bisected to sim@5555555 (confidence 96%)")
    assert "[sim@5555555](https://github.com/example/sim/commit/5555555)" in updated["body"]
    (bisect_comment,) = fake.comments_on(issue["number"])
    assert bisect_comment["body"].startswith("<!-- perfci:bisect 1 -->") and "Decode one token" in bisect_comment["body"]

    before = len(fake.log)
    assert report(db_path, "--issue-on-regression", "--dashboard-url", DASHBOARD, fake=fake).exit_code == 0
    assert [m for m, _ in fake.log[before:] if m != "GET"] == []  # nothing changed: nothing written

    acked = CliRunner().invoke(cli, ["ack", str(finding_id), "--status", "fixed", "--why", "sim decode restored",
                                     "--db", str(db_path)])  # fmt: skip
    assert acked.exit_code == 0, acked.output
    third = report(db_path, "--issue-on-regression", fake=fake)
    assert third.exit_code == 0, third.output
    closed = fake.issues[issue["number"]]
    assert closed["state"] == "closed" and "Status: **fixed**" in closed["body"]
    assert any("sim decode restored. Closing." in c["body"] for c in fake.comments_on(issue["number"]))
    assert len(fake.issues) == 2  # the pull request and the one issue

    closed["state"] = "open"  # a person reopens it: perfci closed it once and leaves it be
    assert report(db_path, "--issue-on-regression", fake=fake).exit_code == 0
    assert fake.issues[issue["number"]]["state"] == "open" and len(fake.comments_on(issue["number"])) == 2


def test_the_newest_detect_pass_is_the_default_report(detected, db_path):
    _, (fast, slow), finding_id = detected
    s = summary.of_latest_detect(open_db(db_path))
    judged = {sec.candidate.run_ids[0]: sec for sec in s.sections}
    assert set(judged) == {fast, slow}
    assert judged[fast].baseline is None or not judged[fast].baseline.run_ids
    regressed = [v for v in judged[slow].verdicts if v.verdict == "regression"]
    assert {"tpot_ms_p50", "output_throughput"} <= {v.key.metric for v in regressed}
    assert all(v.baseline is not None and v.candidate is not None for v in regressed)
    tpot = next(v for v in regressed if v.key.metric == "tpot_ms_p50")
    assert tpot.candidate > 1.5 * tpot.baseline  # medians from the store: twice the decode time
    starts = {v.key.load_label for v in judged[slow].verdicts if v.key.workload == "(startup)"}
    assert starts == {"cold", "warm"}
    assert [f.id for f in s.findings] == [finding_id]

    printed = report(db_path)  # no destination: the summary on stdout
    assert printed.exit_code == 0, printed.output
    assert printed.output.startswith("## perfci: 2 runs judged") and "**Startup**" in printed.output


def test_a_github_failure_still_writes_the_job_summary_and_exits_4(detected, db_path, fake, tmp_path):
    _, (fast, slow), _ = detected
    fake.fail("POST", r"/repos/.*/issues/7/comments", 403, message="Resource not accessible by integration")
    step_summary = tmp_path / "step-summary.md"
    done = report(db_path, "--pr", "7", "--baseline", fast, "--candidate", slow, "--summary", fake=fake,
                  step_summary=step_summary)  # fmt: skip
    assert done.exit_code == 4
    assert "403 Resource not accessible by integration" in done.output and INSTALLATION_TOKEN not in done.output
    assert "🔴" in step_summary.read_text()
    assert len(fake.statuses) == 1  # the steps after the failed one still ran


def test_dry_run_prints_everything_and_posts_nothing(detected, db_path, fake):
    _, (fast, slow), _ = detected
    done = report(db_path, "--dry-run", "--pr", "7", "--issue-on-regression", "--summary", "--baseline", fast,
                  "--candidate", slow, fake=fake, token=None)  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "would upsert the perfci comment on pull request #7" in done.output
    assert "would set commit status 'perfci' on the head of pull request #7: failure" in done.output
    assert "would not file finding" in done.output and "no A/B session has re-measured it" in done.output
    assert "would append to $GITHUB_STEP_SUMMARY" in done.output
    assert fake.log == []


def test_bad_input_is_refused_naming_it(detected, db_path, fake, tmp_path):
    _, (fast, _), _ = detected
    r = report(db_path, "--baseline", fast)
    assert r.exit_code == 2 and "give both --baseline and --candidate" in r.output
    r = CliRunner().invoke(cli, ["report", "--db", str(db_path), "--pr", "7"], env={"GITHUB_REPOSITORY": None})
    assert r.exit_code == 2 and "--repo OWNER/NAME" in r.output
    r = report(db_path, "--pr", "7", fake=fake, token=None)
    assert r.exit_code == 4 and "$GITHUB_TOKEN is not set" in r.output
    r = report(db_path, "--summary")
    assert r.exit_code == 2 and "GITHUB_STEP_SUMMARY is not set" in r.output
    r = report(tmp_path / "missing.db")  # a reader: the store is not created
    assert r.exit_code == 2 and "no store at" in r.output and not (tmp_path / "missing.db").exists()
    open_db(tmp_path / "empty.db").close()
    r = report(tmp_path / "empty.db")
    assert r.exit_code == 2 and "no run has been judged" in r.output
