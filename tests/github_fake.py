"""A fake GitHub over real HTTP (pytest-httpserver): the REST paths perfci uses, answering with GitHub's JSON
shapes (every `url` field pointing at the fake), served under /api/v3 as GitHub Enterprise Server does.

State is in memory: issues (a pull request is an issue too), their comments, pull requests, commit statuses and
check runs. `fail` queues error answers (5xx, rate limits) for the next matching requests.

`mint_token(permissions)` hands out a GITHUB_TOKEN as Actions does for a job: an installation token limited to
the job's `permissions:` block. A call its permissions do not cover gets GitHub's answer, 403 "Resource not
accessible by integration" (creating a check run needs `checks: write`, a status `statuses: write`, an issue
`issues: write`, a pull request comment `pull-requests: write` or `issues: write`).
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode

from werkzeug import Request, Response

OWNER, NAME = "perf-org", "engine-perf"
STAMP = "2026-11-27T03:00:00Z"
INSTALLATION_TOKEN = "ghs_fakeInstallationToken0123456789"
USER_TOKEN = "ghp_fakeUserToken0123456789abcdef"
BOT = "github-actions[bot]"
PER_PAGE = 30  # GitHub's default page size: lists longer than this are paged with Link headers


@dataclass
class Failure:
    method: str
    path: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: dict


@dataclass
class FakeGitHub:
    server: object  # pytest_httpserver.HTTPServer
    users_by_token: dict[str, tuple[str, str]] = field(default_factory=lambda: {
        INSTALLATION_TOKEN: (BOT, "Bot"), USER_TOKEN: ("perf-bot", "User")})  # fmt: skip
    issues: dict[int, dict] = field(default_factory=dict)
    comments: dict[int, dict] = field(default_factory=dict)
    pulls: dict[int, dict] = field(default_factory=dict)
    statuses: list[dict] = field(default_factory=list)
    check_runs: list[dict] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request
    failures: list[Failure] = field(default_factory=list)
    grants: dict[str, dict[str, str]] = field(default_factory=dict)  # minted token → scope → read | write
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1000))

    @property
    def api(self) -> str:
        return self.server.url_for("/api/v3")

    @property
    def repo_url(self) -> str:
        return f"{self.api}/repos/{OWNER}/{NAME}"

    # --- what tests arrange and inspect ---------------------------------------------------------------------

    def add_pull_request(self, number: int, head_sha: str, *, author: str = "octocat") -> None:
        self.issues[number] = self._issue(number, f"Bump vllm (#{number})", "", [], self._user(author, "User"),
                                          pull=True)  # fmt: skip
        self.pulls[number] = self._pull(number, head_sha, self._user(author, "User"))

    def add_comment(self, number: int, body: str, *, login: str, kind: str = "User") -> dict:
        comment = self._comment(number, body, self._user(login, kind))
        self.comments[comment["id"]] = comment
        return comment

    def comments_on(self, number: int) -> list[dict]:
        return [c for c in self.comments.values() if c["issue_url"].endswith(f"/issues/{number}")]

    def mint_token(self, permissions: dict[str, str]) -> str:
        """An installation token with these permissions only (metadata: read comes with every token)."""
        token = "ghs_" + secrets.token_hex(18)
        self.users_by_token[token] = (BOT, "Bot")
        self.grants[token] = {"metadata": "read"} | permissions
        return token

    def permissions_of(self, token: str) -> dict[str, str]:
        if token not in self.users_by_token:
            return {}
        return self.grants.get(token, {"*": "write"})  # the fixed test tokens may do anything

    def fail(self, method: str, path: str, status: int, *, times: int = 1, headers: dict | None = None,
             message: str = "Server Error") -> None:  # fmt: skip
        for _ in range(times):
            self.failures.append(Failure(method, re.compile(path), status, headers or {}, {"message": message}))

    # --- the HTTP side ----------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        path = request.path.removeprefix("/api/v3")
        self.log.append((request.method, path))
        for failure in self.failures:
            if failure.method == request.method and failure.path.fullmatch(path):
                self.failures.remove(failure)
                return _json(failure.body, failure.status, failure.headers)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("token ")
        if token not in self.users_by_token:
            return _json({"message": "Bad credentials"}, 401)
        login, kind = self.users_by_token[token]
        me = self._user(login, kind)
        body = request.get_json(silent=True) or {}
        base = f"/repos/{OWNER}/{NAME}"
        # (method, path, the permission it needs: scopes any of which will do, and the level; the answer)
        issue = lambda n: ("issues", "pull-requests") if "pull_request" in self.issues.get(int(n), {}) else ("issues",)  # noqa: E731
        comment = lambda c: issue(self.comments[int(c)]["issue_url"].rsplit("/", 1)[1]) if int(c) in self.comments else ("issues",)  # noqa: E731
        routes = [
            ("GET", r"/user", None, lambda: _json({"message": "Resource not accessible by integration"}, 403)
             if kind == "Bot" else _json(self._authenticated(me))),  # fmt: skip
            ("GET", base, lambda: (("metadata",), "read"), lambda: _json(self._repo())),
            ("GET", base + r"/issues", lambda: (("issues",), "read"), lambda: self._list_issues(request)),
            ("POST", base + r"/issues", lambda: (("issues",), "write"), lambda: self._create_issue(body, me)),
            ("GET", base + r"/issues/(\d+)", lambda n: (issue(n), "read"), lambda n: self._get(self.issues, n)),
            ("PATCH", base + r"/issues/(\d+)", lambda n: (issue(n), "write"), lambda n: self._edit_issue(int(n), body)),
            ("GET", base + r"/issues/(\d+)/comments", lambda n: (issue(n), "read"),
             lambda n: self._page(request, self.comments_on(int(n)))),
            ("POST", base + r"/issues/(\d+)/comments", lambda n: (issue(n), "write"),
             lambda n: self._create_comment(int(n), body, me)),
            ("PATCH", base + r"/issues/comments/(\d+)", lambda c: (comment(c), "write"),
             lambda c: self._edit_comment(int(c), body, me)),
            ("DELETE", base + r"/issues/comments/(\d+)", lambda c: (comment(c), "write"),
             lambda c: self._delete_comment(int(c), me)),
            ("GET", base + r"/pulls/(\d+)", lambda n: (("pull-requests",), "read"), lambda n: self._get(self.pulls, n)),
            ("POST", base + r"/statuses/([0-9a-f]{40})", lambda sha: (("statuses",), "write"),
             lambda sha: self._create_status(sha, body, me)),
            ("POST", base + r"/check-runs", lambda: (("checks",), "write"), lambda: self._create_check_run(body, kind)),
        ]  # fmt: skip
        for method, pattern, needs, answer in routes:
            match = re.fullmatch(pattern, path)
            if match and method == request.method:
                if needs is not None and not self._allowed(token, *needs(*match.groups())):
                    return _json({"message": "Resource not accessible by integration",
                                  "documentation_url": "https://docs.github.com/rest"}, 403)  # fmt: skip
                return answer(*match.groups())
        return _json({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, 404)

    def _allowed(self, token: str, scopes: tuple[str, ...], level: str) -> bool:
        granted = self.permissions_of(token)
        if "*" in granted:
            return True
        wanted = {"read": ("read", "write"), "write": ("write",)}[level]
        return any(granted.get(scope) in wanted for scope in scopes)

    def _get(self, table: dict[int, dict], number: str) -> Response:
        item = table.get(int(number))
        return _json(item) if item else _json({"message": "Not Found"}, 404)

    def _page(self, request: Request, items: list[dict]) -> Response:
        per_page = int(request.args.get("per_page", PER_PAGE))
        page = int(request.args.get("page", 1))
        headers = {}
        if page * per_page < len(items):
            query = dict(request.args) | {"page": page + 1, "per_page": per_page}
            headers["Link"] = f'<{self.api}{request.path.removeprefix("/api/v3")}?{urlencode(query)}>; rel="next"'
        return _json(items[(page - 1) * per_page : page * per_page], headers=headers)

    def _list_issues(self, request: Request) -> Response:
        state = request.args.get("state", "open")
        wanted = {label for label in request.args.get("labels", "").split(",") if label}
        chosen = [i for n, i in sorted(self.issues.items())
                  if (state == "all" or i["state"] == state) and wanted <= {label["name"] for label in i["labels"]}]  # fmt: skip
        if request.args.get("direction", "desc") == "desc":
            chosen.reverse()
        return self._page(request, chosen)

    def _create_issue(self, body: dict, me: dict) -> Response:
        if not body.get("title"):
            return _json({"message": "Validation Failed", "errors": [{"field": "title", "code": "missing_field"}]}, 422)
        number = max(self.issues, default=0) + 1
        self.issues[number] = self._issue(number, body["title"], body.get("body") or "", body.get("labels") or [], me)
        return _json(self.issues[number], 201)

    def _edit_issue(self, number: int, body: dict) -> Response:
        issue = self.issues.get(number)
        if issue is None:
            return _json({"message": "Not Found"}, 404)
        for key in ("title", "body", "state"):
            if key in body:
                issue[key] = body[key]
        issue["body_html"] = issue["body_text"] = issue["body"]
        issue["closed_at"] = STAMP if issue["state"] == "closed" else None
        return _json(issue)

    def _create_comment(self, number: int, body: dict, me: dict) -> Response:
        if number not in self.issues:
            return _json({"message": "Not Found"}, 404)
        comment = self._comment(number, body["body"], me)
        self.comments[comment["id"]] = comment
        self.issues[number]["comments"] += 1
        return _json(comment, 201)

    def _edit_comment(self, comment_id: int, body: dict, me: dict) -> Response:
        comment = self.comments.get(comment_id)
        if comment is None:
            return _json({"message": "Not Found"}, 404)
        if comment["user"]["login"] != me["login"]:
            return _json({"message": "Resource not accessible by integration"}, 403)
        comment["body"] = comment["body_html"] = comment["body_text"] = body["body"]
        return _json(comment)

    def _delete_comment(self, comment_id: int, me: dict) -> Response:
        comment = self.comments.get(comment_id)
        if comment is None or comment["user"]["login"] != me["login"]:
            return _json({"message": "Not Found"}, 404)
        del self.comments[comment_id]
        return Response(status=204)

    def _create_status(self, sha: str, body: dict, me: dict) -> Response:
        if body.get("state") not in ("error", "failure", "pending", "success"):
            return _json({"message": "Validation Failed"}, 422)
        status = {"url": f"{self.repo_url}/statuses/{sha}", "avatar_url": None, "id": next(self._ids),
                  "node_id": "SC_x", "state": body["state"], "description": body.get("description"),
                  "target_url": body.get("target_url"), "context": body.get("context", "default"),
                  "created_at": STAMP, "updated_at": STAMP, "creator": me, "sha": sha}  # fmt: skip
        self.statuses.append(status)
        return _json({k: v for k, v in status.items() if k != "sha"}, 201)

    def _create_check_run(self, body: dict, kind: str) -> Response:
        if kind != "Bot":
            return _json({"message": "You must authenticate via a GitHub App."}, 403)
        run_id = next(self._ids)
        output = body.get("output") or {}
        run = {
            "id": run_id, "head_sha": body["head_sha"], "node_id": "CR_x", "external_id": body.get("external_id") or "",
            "url": f"{self.repo_url}/check-runs/{run_id}",
            "html_url": f"{self.server.url_for('/')}{OWNER}/{NAME}/runs/{run_id}",
            "details_url": body.get("details_url"), "status": body.get("status", "queued"),
            "conclusion": body.get("conclusion"), "started_at": STAMP, "completed_at": body.get("completed_at"),
            "output": {"title": output.get("title"), "summary": output.get("summary"), "text": output.get("text"),
                       "annotations_count": 0, "annotations_url": f"{self.repo_url}/check-runs/{run_id}/annotations"},
            "name": body["name"],
            "check_suite": {"id": 5},
            "app": {"id": 15368, "slug": "github-actions", "node_id": "MDM6QXBwMTUzNjg=", "name": "GitHub Actions",
                    "description": "Automate your workflow", "external_url": "https://help.github.com/en/actions",
                    "html_url": "https://github.com/apps/github-actions", "created_at": STAMP, "updated_at": STAMP,
                    "owner": self._user("github", "Organization")},
            "pull_requests": [],
        }  # fmt: skip
        self.check_runs.append(run)
        return _json(run, 201)

    # --- GitHub's JSON shapes ---------------------------------------------------------------------------------

    def _user(self, login: str, kind: str) -> dict:
        url = f"{self.api}/users/{login}"
        return {
            "login": login, "id": abs(hash(login)) % 10**8, "node_id": "U_x", "avatar_url": "",
            "gravatar_id": "", "url": url, "html_url": f"{self.server.url_for('/')}{login}",
            "followers_url": f"{url}/followers", "following_url": f"{url}/following{{/other_user}}",
            "gists_url": f"{url}/gists{{/gist_id}}", "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{url}/subscriptions", "organizations_url": f"{url}/orgs",
            "repos_url": f"{url}/repos", "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events", "type": kind, "site_admin": False,
        }  # fmt: skip

    def _authenticated(self, user: dict) -> dict:
        return user | {"name": user["login"], "company": None, "blog": "", "location": None, "email": None,
                       "hireable": None, "bio": None, "public_repos": 0, "public_gists": 0, "followers": 0,
                       "following": 0, "created_at": STAMP, "updated_at": STAMP, "private_gists": 0,
                       "total_private_repos": 0, "owned_private_repos": 0, "disk_usage": 0, "collaborators": 0,
                       "two_factor_authentication": True,
                       "plan": {"name": "free", "space": 976562499, "private_repos": 10000, "collaborators": 0}}  # fmt: skip

    def _repo(self) -> dict:
        u = self.repo_url
        templated = {"archive": "/{archive_format}{/ref}", "assignees": "/assignees{/user}",
                     "blobs": "/git/blobs{/sha}", "branches": "/branches{/branch}",
                     "collaborators": "/collaborators{/collaborator}", "comments": "/comments{/number}",
                     "commits": "/commits{/sha}", "compare": "/compare/{base}...{head}", "contents": "/contents/{+path}",
                     "git_commits": "/git/commits{/sha}", "git_refs": "/git/refs{/sha}", "git_tags": "/git/tags{/sha}",
                     "issue_comment": "/issues/comments{/number}", "issue_events": "/issues/events{/number}",
                     "issues": "/issues{/number}", "keys": "/keys{/key_id}", "labels": "/labels{/name}",
                     "milestones": "/milestones{/number}", "notifications": "/notifications{?since,all,participating}",
                     "pulls": "/pulls{/number}", "releases": "/releases{/id}", "statuses": "/statuses/{sha}",
                     "trees": "/git/trees{/sha}"}  # fmt: skip
        plain = ("contributors", "deployments", "downloads", "events", "forks", "hooks", "languages", "merges",
                 "stargazers", "subscribers", "subscription", "tags", "teams")  # fmt: skip
        urls = {f"{k}_url": u + v for k, v in templated.items()}
        urls |= {f"{k}_url": f"{u}/{k}" for k in plain}
        web = f"{self.server.url_for('/')}{OWNER}/{NAME}"
        return urls | {
            "id": 1296269, "node_id": "R_x", "name": NAME, "full_name": f"{OWNER}/{NAME}",
            "owner": self._user(OWNER, "Organization"), "private": False, "html_url": web,
            "description": "Performance CI", "fork": False, "url": u, "clone_url": f"{web}.git",
            "git_url": f"git:{web}.git", "ssh_url": f"git@fake:{OWNER}/{NAME}.git", "svn_url": web, "mirror_url": None,
            "homepage": None, "language": "Python", "forks_count": 0, "stargazers_count": 0, "watchers_count": 0,
            "size": 1, "default_branch": "main", "open_issues_count": len(self.issues), "has_issues": True,
            "has_projects": False, "has_wiki": False, "has_pages": False, "has_downloads": True, "archived": False,
            "pushed_at": STAMP, "created_at": STAMP, "updated_at": STAMP, "subscribers_count": 0,
            "network_count": 0, "permissions": {"admin": False, "push": True, "pull": True},
        }  # fmt: skip

    def _label(self, name: str) -> dict:
        return {"id": abs(hash(name)) % 10**6, "node_id": "L_x", "url": f"{self.repo_url}/labels/{name}",
                "name": name, "color": "d73a4a", "default": False, "description": None}  # fmt: skip

    def _issue(self, number: int, title: str, body: str, labels: list[str], user: dict, *, pull: bool = False) -> dict:
        url = f"{self.repo_url}/issues/{number}"
        web = f"{self.server.url_for('/')}{OWNER}/{NAME}/{'pull' if pull else 'issues'}/{number}"
        issue = {
            "id": next(self._ids), "node_id": "I_x", "url": url, "repository_url": self.repo_url,
            "labels_url": f"{url}/labels{{/name}}", "comments_url": f"{url}/comments", "events_url": f"{url}/events",
            "html_url": web, "number": number, "state": "open", "title": title, "body": body, "body_html": body,
            "body_text": body, "user": user, "labels": [self._label(n) for n in labels], "assignee": None,
            "assignees": [], "milestone": None, "locked": False, "active_lock_reason": None, "comments": 0,
            "closed_at": None, "created_at": STAMP, "updated_at": STAMP, "closed_by": None,
            "author_association": "MEMBER",
        }  # fmt: skip
        if pull:
            issue["pull_request"] = {"url": f"{self.repo_url}/pulls/{number}", "html_url": web,
                                     "diff_url": f"{web}.diff", "patch_url": f"{web}.patch"}  # fmt: skip
        return issue

    def _comment(self, number: int, body: str, user: dict) -> dict:
        comment_id = next(self._ids)
        return {
            "id": comment_id, "node_id": "IC_x", "url": f"{self.repo_url}/issues/comments/{comment_id}",
            "html_url": f"{self.server.url_for('/')}{OWNER}/{NAME}/issues/{number}#issuecomment-{comment_id}",
            "body": body, "body_html": body, "body_text": body, "user": user, "created_at": STAMP,
            "updated_at": STAMP, "issue_url": f"{self.repo_url}/issues/{number}", "author_association": "NONE",
        }  # fmt: skip

    def _pull(self, number: int, head_sha: str, user: dict) -> dict:
        url = f"{self.repo_url}/pulls/{number}"
        web = f"{self.server.url_for('/')}{OWNER}/{NAME}/pull/{number}"
        side = lambda ref, sha: {"label": f"{OWNER}:{ref}", "ref": ref, "sha": sha, "user": user, "repo": self._repo()}  # noqa: E731
        return {
            "url": url, "id": next(self._ids), "node_id": "PR_x", "html_url": web, "diff_url": f"{web}.diff",
            "patch_url": f"{web}.patch", "issue_url": f"{self.repo_url}/issues/{number}", "number": number,
            "state": "open", "locked": False, "title": f"Bump vllm (#{number})", "user": user, "body": "",
            "body_html": "", "body_text": "", "created_at": STAMP, "updated_at": STAMP, "closed_at": None,
            "merged_at": None, "merge_commit_sha": None, "assignee": None, "assignees": [],
            "requested_reviewers": [], "requested_teams": [], "labels": [], "milestone": None, "draft": False,
            "commits_url": f"{url}/commits", "review_comments_url": f"{url}/comments",
            "review_comment_url": f"{self.repo_url}/pulls/comments{{/number}}",
            "comments_url": f"{self.repo_url}/issues/{number}/comments",
            "statuses_url": f"{self.repo_url}/statuses/{head_sha}", "head": side("bump-vllm", head_sha),
            "base": side("main", "0" * 40), "_links": {"self": {"href": url}, "html": {"href": web}},
            "author_association": "MEMBER", "active_lock_reason": None, "merged": False, "mergeable": True,
            "rebaseable": True, "mergeable_state": "clean", "merged_by": None, "comments": 0, "review_comments": 0,
            "maintainer_can_modify": False, "commits": 1, "additions": 1, "deletions": 1, "changed_files": 1,
        }  # fmt: skip


def _json(payload, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(payload), status=status, headers=headers or {}, content_type="application/json")


def install(httpserver) -> FakeGitHub:
    """A FakeGitHub answering every request to `httpserver`."""
    fake = FakeGitHub(httpserver)
    httpserver.expect_request(re.compile(".*")).respond_with_handler(fake.handle)
    return fake
