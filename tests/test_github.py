"""perfci.report.github against a fake GitHub Enterprise over real HTTP (tests/github_fake.py): comments, statuses,
check runs, issues, retries, and the token kept out of every message."""

from __future__ import annotations

import logging
import re

import pytest

from perfci.report import github
from tests.github_fake import BOT, INSTALLATION_TOKEN, NAME, OWNER, USER_TOKEN, install

SHA = "0123456789abcdef0123456789abcdef01234567"
MARKER = "<!-- perfci:summary -->"
FINDING = re.compile(r"<!-- perfci:finding \S+ -->")


@pytest.fixture
def fake(httpserver):
    fake = install(httpserver)
    fake.add_pull_request(7, SHA)
    return fake


@pytest.fixture
def sleeps():
    return []


def repository(fake, sleeps, token=INSTALLATION_TOKEN, **kwargs) -> github.Repository:
    return github.Repository(github.connect(fake.api, token, sleep=sleeps.append), f"{OWNER}/{NAME}", **kwargs)


def test_comment_is_created_then_updated_never_duplicated(fake, sleeps):
    for i in range(120):  # more than one page of comments (github3 asks for 100 a page)
        fake.add_comment(7, f"comment {i}", login="someone")
    quoted = fake.add_comment(7, f"a person quoting perfci: {MARKER}", login="someone")
    repo = repository(fake, sleeps)
    assert repo.upsert_comment(7, MARKER, f"{MARKER}\nfirst") == "created"
    assert repo.upsert_comment(7, MARKER, f"{MARKER}\nsecond") == "updated"
    assert repo.upsert_comment(7, MARKER, f"{MARKER}\nsecond") == "unchanged"
    ours = [c for c in fake.comments_on(7) if c["user"]["login"] == BOT]
    assert [c["body"] for c in ours] == [f"{MARKER}\nsecond"]
    assert fake.comments[quoted["id"]]["body"].startswith("a person quoting")  # not ours: never touched
    assert ("GET", f"/repos/{OWNER}/{NAME}/issues/7/comments") in fake.log  # the enterprise /api/v3 prefix was used
    assert sleeps == []


def test_duplicate_comments_left_by_a_retried_post_are_removed(fake, sleeps):
    for body in ("old", "older duplicate"):
        fake.add_comment(7, f"{MARKER}\n{body}", login=BOT, kind="Bot")
    assert repository(fake, sleeps).upsert_comment(7, MARKER, f"{MARKER}\nnew") == "updated"
    assert [c["body"] for c in fake.comments_on(7)] == [f"{MARKER}\nnew"]


def test_a_user_token_edits_only_its_own_users_comments(fake, sleeps):
    fake.add_comment(7, f"{MARKER}\nby the bot", login=BOT, kind="Bot")
    repo = repository(fake, sleeps, token=USER_TOKEN)
    assert repo.upsert_comment(7, MARKER, f"{MARKER}\nby perf-bot") == "created"
    assert repo.upsert_comment(7, MARKER, f"{MARKER}\nby perf-bot, again") == "updated"
    assert sorted(c["body"] for c in fake.comments_on(7)) == [f"{MARKER}\nby perf-bot, again", f"{MARKER}\nby the bot"]
    assert ("GET", "/user") in fake.log


def test_status_and_check_run_on_the_pull_requests_head(fake, sleeps):
    repo = repository(fake, sleeps)
    sha = repo.head_sha(7)
    assert sha == SHA
    repo.set_status(sha, state="failure", description="x" * 200, context="perfci", target_url="https://dash/")
    repo.create_check_run(sha, name="perfci", conclusion="failure", title="perfci: 1 regression",
                          summary="## summary", details_url="https://dash/")  # fmt: skip
    (status,) = fake.statuses
    assert (status["sha"], status["state"], status["context"], len(status["description"])) == (SHA, "failure", "perfci", 140)
    (run,) = fake.check_runs
    assert (run["head_sha"], run["status"], run["conclusion"]) == (SHA, "completed", "failure")
    assert run["output"] == {"title": "perfci: 1 regression", "summary": "## summary", "text": None,
                             "annotations_count": 0, "annotations_url": run["output"]["annotations_url"]}  # fmt: skip


def test_check_runs_need_an_installation_token(fake, sleeps):
    repo = repository(fake, sleeps, token=USER_TOKEN)
    assert not repo.installation
    with pytest.raises(github.GitHubError, match="installation token"):
        repo.create_check_run(SHA, name="perfci", conclusion="success", title="t", summary="s", details_url=None)
    assert fake.check_runs == []


def test_issue_create_find_update_close(fake, sleeps):
    repo = repository(fake, sleeps)
    marker = "<!-- perfci:finding sim/cpu/smoke/sim==0.2.0 -->"
    fake.issues[50] = fake._issue(50, "a human's issue quoting perfci", marker, ["perfci"], fake._user("someone", "User"))
    created = repo.create_issue(title="sim==0.2.0 made TTFT p50 12% worse", body=f"{marker}\nbody",
                                labels=["perfci", "performance-regression"])  # fmt: skip
    assert created.labels == ("perfci", "performance-regression") and created.state == "open"
    other = repo.create_issue(title="unlabelled", body="<!-- perfci:finding x/y/z/w -->", labels=[])
    found = repo.marked_issues("perfci", FINDING)
    assert list(found) == [marker] and found[marker].number == created.number  # not the human's, not unlabelled
    repo.update_issue(created.number, title="updated title", body=f"{marker}\nnew body")
    repo.update_issue(created.number, title="updated title", body=f"{marker}\nfixed", state="closed")
    issue = fake.issues[created.number]
    assert (issue["title"], issue["body"], issue["state"]) == ("updated title", f"{marker}\nfixed", "closed")
    assert repo.marked_issues("perfci", FINDING)[marker].state == "closed"  # closed issues are still found
    assert fake.issues[other.number]["state"] == "open"


def test_a_502_is_retried_with_backoff(fake, sleeps):
    fake.fail("POST", r"/repos/.*/issues/7/comments", 502, times=2, message="Bad Gateway")
    assert repository(fake, sleeps).upsert_comment(7, MARKER, f"{MARKER}\nx") == "created"
    assert sleeps == [1.0, 2.0]
    assert len(fake.comments_on(7)) == 1


def test_a_secondary_rate_limit_waits_retry_after(fake, sleeps):
    fake.fail("GET", r"/repos/.*/pulls/7", 403, headers={"Retry-After": "7"},
              message="You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")  # fmt: skip
    assert repository(fake, sleeps).head_sha(7) == SHA
    assert sleeps == [7.0]


def test_secondary_rate_limit_without_retry_after_waits_a_minute(fake, sleeps):
    fake.fail("POST", r"/repos/.*/statuses/.*", 403, message="You have exceeded a secondary rate limit.")
    repository(fake, sleeps).set_status(SHA, state="success", description="ok", context="perfci", target_url=None)
    assert sleeps == [60.0] and len(fake.statuses) == 1


def test_a_permission_error_is_not_retried_and_never_shows_the_token(fake, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    fake.fail("POST", r"/repos/.*/issues", 403, message="Resource not accessible by integration")
    repo = repository(fake, sleeps)
    with pytest.raises(github.GitHubError) as raised:
        repo.create_issue(title="t", body="b", labels=[])
    assert "403 Resource not accessible by integration" in str(raised.value) and "creating an issue" in str(raised.value)
    assert sleeps == []
    assert INSTALLATION_TOKEN not in str(raised.value) and INSTALLATION_TOKEN not in caplog.text
    assert INSTALLATION_TOKEN not in repr(repo._gh.session.auth)


def test_persistent_5xx_gives_up_after_its_attempts(fake, sleeps):
    fake.fail("GET", r"/repos/.*/pulls/7", 503, times=github.ATTEMPTS)
    with pytest.raises(github.GitHubError, match="503"):
        repository(fake, sleeps).head_sha(7)
    assert sleeps == [1.0, 2.0, 4.0, 8.0]


def test_a_bad_token_or_repository_is_a_github_error(fake, sleeps):
    with pytest.raises(github.GitHubError, match="401 Bad credentials"):
        repository(fake, sleeps, token="ghp_wrong")
    with pytest.raises(github.GitHubError, match="OWNER/NAME"):
        github.Repository(github.connect(fake.api, INSTALLATION_TOKEN), "no-slash")


def test_retry_wait_reads_github_rate_limit_headers():
    class Answer:
        def __init__(self, status, headers=None, text=""):
            self.status_code, self.headers, self.text = status, headers or {}, text

    assert github.retry_wait(Answer(200), 1, now=0) is None
    assert github.retry_wait(Answer(404), 1, now=0) is None
    assert github.retry_wait(Answer(502), 3, now=0) == 4.0
    assert github.retry_wait(Answer(503, {"Retry-After": "12"}), 1, now=0) == 12.0
    reset = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1030"}
    assert github.retry_wait(Answer(403, reset), 1, now=1000.0) == 31.0  # the primary limit: until its reset
    assert github.retry_wait(Answer(429, {"Retry-After": "600"}), 1, now=0) is None  # too long: fail now
