"""GitHub, through github3.py: the only module that imports it. Here: the releases of an engine repository."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import github3
import requests
from github3.exceptions import GitHubException
from github3.repos.release import Release as _Release
from github3.structs import GitHubIterator

from perfci.errors import SourceError

API_URL = "https://api.github.com"


def connect(api_url: str | None = None, token: str | None = None) -> github3.GitHub:
    """A client for the API at `api_url`: https://api.github.com (default), or https://HOST/api/v3 on a GitHub
    Enterprise Server (a local fake GitHub in tests is one), authenticated with `token` when given."""
    gh = github3.GitHub(token=token)
    gh.session.base_url = (api_url or API_URL).rstrip("/")
    return gh


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
