"""GitHub: the only module that talks to it (through github3.py), for github.com and GitHub Enterprise alike.

`connect` builds the one client every caller uses: an API base URL (`$GITHUB_API_URL`: https://api.github.com,
or https://HOST/api/v3 on GitHub Enterprise Server), a token, and retries. `Repository` is what `perfci report`
needs of one repository: marker-found comments, commit statuses, check runs and marker-found issues; `releases`
is what `perfci watch` needs: an engine repository's releases.

The token is handed to the HTTP session and nowhere else: no message, log line or repr holds it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import github3
import requests
from github3.exceptions import GitHubException
from github3.repos.release import Release as _Release
from github3.session import GitHubSession
from github3.structs import GitHubIterator

from perfci.errors import EXIT_EXTERNAL, PerfciError, SourceError

API_URL = "https://api.github.com"
RETRY_STATUSES = frozenset({500, 502, 503, 504})
ATTEMPTS = 5  # one request and up to four retries
MAX_WAIT_S = 120.0  # a longer Retry-After (or rate-limit reset) fails now rather than stalling the job
SECONDARY_WAIT_S = 60.0  # GitHub: without Retry-After, wait at least a minute after a secondary rate limit
# GitHub's server-to-server tokens (a GitHub App installation's, which Actions' GITHUB_TOKEN is) start with this;
# only they may create check runs, and they cannot read /user.
INSTALLATION_TOKEN_PREFIX = "ghs_"


class GitHubError(PerfciError):
    """A GitHub call failed after its retries (or cannot be made). The job summary is written before any call."""

    exit_code = EXIT_EXTERNAL


class _RetryingSession(GitHubSession):
    """github3's session, retrying 5xx answers, connection failures and rate limits with backoff.

    Every method is retried, POST included. A POST answered 5xx may have been done all the same: the comment
    upsert deletes the duplicate a retry then leaves; of two issues with one marker the older is the one kept."""

    def __init__(self, sleep: Callable[[float], None], clock: Callable[[], float]):
        super().__init__(default_connect_timeout=10, default_read_timeout=30)
        self.sleep = sleep
        self.clock = clock

    def request(self, method, url, *args, **kwargs):
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = super().request(method, url, *args, **kwargs)
            except requests.ConnectionError:
                if attempt == ATTEMPTS:
                    raise
                self.sleep(_backoff(attempt))
                continue
            wait = retry_wait(response, attempt, now=self.clock())
            if wait is None or attempt == ATTEMPTS:
                return response
            self.sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt


def _backoff(attempt: int) -> float:
    return float(min(2 ** (attempt - 1), 30))  # 1, 2, 4, 8 s


def retry_wait(response: requests.Response, attempt: int, *, now: float) -> float | None:
    """Seconds to wait before retrying `response` (the `attempt`-th try), or None when it is an answer to keep:
    success, a real client error, or a wait longer than MAX_WAIT_S."""
    status = response.status_code
    headers = response.headers
    if status in RETRY_STATUSES:
        wait = _seconds(headers.get("Retry-After")) or _backoff(attempt)
    elif status in (403, 429):
        if "Retry-After" in headers:
            wait = _seconds(headers["Retry-After"]) or 0.0
        elif headers.get("X-RateLimit-Remaining") == "0" and headers.get("X-RateLimit-Reset", "").isdigit():
            wait = max(float(headers["X-RateLimit-Reset"]) - now, 0.0) + 1.0  # primary limit: until the reset
        elif "secondary rate limit" in response.text.lower():
            wait = SECONDARY_WAIT_S * 2 ** (attempt - 1)
        else:
            return None  # a permission problem: retrying changes nothing
    else:
        return None
    return wait if wait <= MAX_WAIT_S else None


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None  # an HTTP date: GitHub sends seconds; fall back to backoff


def is_installation_token(token: str | None) -> bool:
    return bool(token) and token.startswith(INSTALLATION_TOKEN_PREFIX)


def connect(api_url: str | None = None, token: str | None = None, *, sleep: Callable[[float], None] = time.sleep,
            clock: Callable[[], float] = time.time) -> github3.GitHub:  # fmt: skip
    """A github3 client for `api_url` (default github.com; an Enterprise Server's is https://HOST/api/v3),
    authenticated with `token` when given. An installation token is wrapped so github3 allows check runs."""
    session = _RetryingSession(sleep, clock)
    session.base_url = (api_url or API_URL).rstrip("/")
    if is_installation_token(token):
        # Its real expiry is unknown here (GITHUB_TOKEN lives as long as its job, at most a day); github3 only
        # needs one to refuse a token it knows is stale.
        expires = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        session.app_installation_token_auth({"token": token, "expires_at": expires})
    elif token:
        session.token_auth(token)
    return github3.GitHub(session=session)


@contextmanager
def _calling(what: str) -> Iterator[None]:
    """Turn github3's and requests' failures into one GitHubError naming the call (never the token)."""
    try:
        yield
    except GitHubException as e:
        raise GitHubError(f"GitHub: {what} failed: {e}") from None
    except requests.RequestException as e:
        raise GitHubError(f"GitHub: {what} failed: {type(e).__name__}: {e}") from None  # URLs only: no header


@dataclass(frozen=True)
class Issue:
    number: int
    title: str
    body: str
    state: str  # open | closed
    labels: tuple[str, ...]
    html_url: str


class Repository:
    """One repository, as `perfci report` uses it. `bot_login` is whose comments perfci may edit: by default the
    token's user, or, for an installation token (which cannot read /user), any bot account."""

    def __init__(self, gh: github3.GitHub, full_name: str, *, bot_login: str | None = None):
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise GitHubError(f"repository {full_name!r}: expected OWNER/NAME")
        self.full_name = full_name
        self._gh = gh
        with _calling(f"reading repository {full_name}"):
            self._repo = gh.repository(owner, name)
        self.installation = isinstance(gh.session.auth, github3.session.AppInstallationTokenAuth)
        self._bot_login = bot_login

    def _is_mine(self, user) -> bool:
        if self._bot_login is None and not self.installation:
            with _calling("reading the token's user (/user)"):
                self._bot_login = self._gh.me().login
        return user.login == self._bot_login if self._bot_login else user.type == "Bot"

    def _ours(self, issue, marker: str) -> list:
        return [c for c in issue.comments() if marker in (c.body or "") and self._is_mine(c.user)]

    def has_comment(self, number: int, marker: str) -> bool:
        """Whether we left a comment holding `marker` on issue or pull request `number`."""
        with _calling(f"reading the comments of #{number} of {self.full_name}"):
            return bool(self._ours(self._repo.issue(number), marker))

    def upsert_comment(self, number: int, marker: str, body: str) -> str:
        """Leave exactly one comment of ours holding `marker` on issue or pull request `number`, with `body`
        (which must hold the marker): edit the oldest, delete any other. Returns 'created', 'updated' or
        'unchanged'."""
        if marker not in body:
            raise ValueError("the body must hold the marker, or the next upsert cannot find it")
        with _calling(f"upserting the perfci comment on #{number} of {self.full_name}"):
            issue = self._repo.issue(number)
            ours = self._ours(issue, marker)
            if not ours:
                issue.create_comment(body)
                return "created"
            first, *extra = sorted(ours, key=lambda c: c.id)
            for duplicate in extra:
                duplicate.delete()
            if first.body == body:
                return "unchanged"
            first.edit(body)
            return "updated"

    def head_sha(self, number: int) -> str:
        with _calling(f"reading pull request #{number} of {self.full_name}"):
            return self._repo.pull_request(number).head.sha

    def set_status(self, sha: str, *, state: str, description: str, context: str, target_url: str | None) -> None:
        """A commit status (state: success | failure | error | pending; description ≤ 140 characters)."""
        with _calling(f"setting status {context!r} on {sha[:12]}"):
            self._repo.create_status(sha, state, target_url=target_url, description=description[:140],
                                     context=context)  # fmt: skip

    def create_check_run(self, sha: str, *, name: str, conclusion: str, title: str, summary: str,
                         details_url: str | None) -> None:  # fmt: skip
        """A completed check run carrying `summary` (markdown); needs an installation token."""
        if not self.installation:
            raise GitHubError("check runs need a GitHub App installation token (Actions' GITHUB_TOKEN is one)")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with _calling(f"creating check run {name!r} on {sha[:12]}"):
            self._repo.create_check_run(name, sha, details_url=details_url, status="completed", conclusion=conclusion,
                                        completed_at=now, output={"title": title, "summary": summary})  # fmt: skip

    def marked_issues(self, label: str, marker: re.Pattern[str]) -> dict[str, Issue]:
        """Our issues, open or closed, labelled `label`, by the first match of `marker` in their body (for a marker
        two issues hold, the older one)."""
        found: dict[str, Issue] = {}
        with _calling(f"listing issues labelled {label!r} in {self.full_name}"):
            for issue in self._repo.issues(state="all", labels=label, sort="created", direction="asc"):
                match = marker.search(issue.body or "")
                if match and issue.pull_request_urls is None and self._is_mine(issue.user):
                    found.setdefault(match.group(0), _issue(issue))
        return found

    def create_issue(self, *, title: str, body: str, labels: list[str]) -> Issue:
        with _calling(f"creating an issue in {self.full_name}"):
            return _issue(self._repo.create_issue(title, body=body, labels=labels))

    def update_issue(self, number: int, *, title: str, body: str, state: str | None = None) -> None:
        """Edit an issue's title and body, and open or close it when `state` is given."""
        with _calling(f"updating issue #{number} of {self.full_name}"):
            self._repo.issue(number).edit(title=title, body=body, state=state)


def _issue(issue) -> Issue:
    labels = tuple(label.name for label in issue.original_labels or ())
    return Issue(issue.number, issue.title, issue.body or "", issue.state, labels, issue.html_url)


@dataclass(frozen=True, slots=True)
class Release:
    tag: str
    name: str | None
    published: datetime | None
    prerelease: bool
    draft: bool


def releases(gh: github3.GitHub, repo: str, *, limit: int = 50) -> list[Release]:
    """The newest `limit` releases of `repo` ("owner/name"), newest first. Any HTTP or parse failure raises
    SourceError naming the repository."""
    owner, _, name = repo.partition("/")
    if not owner or not name or "/" in name:
        raise SourceError(f"bad GitHub repository {repo!r}: expected owner/name")
    # Listing releases needs no Repository object (that would cost one more request and its whole JSON).
    url = f"{gh.session.base_url}/repos/{owner}/{name}/releases"
    try:
        found = [
            Release(tag=r.tag_name, name=r.name, published=r.published_at, prerelease=r.prerelease, draft=r.draft)
            for r in GitHubIterator(limit, url, _Release, gh.session)
        ]
    except (GitHubException, requests.RequestException, KeyError, TypeError, ValueError) as e:
        raise SourceError(f"GitHub releases of {repo} at {gh.session.base_url}: {type(e).__name__}: {e}") from e
    return found
