"""`perfci report`: decide what to post (a Plan, pure), write the job summary, then post the plan to GitHub.

Nothing is kept between runs: perfci finds its pull request comment, its issues and its issue comments again
by the hidden markers in them (markdown.py), so a report can run any number of times, from a rebuilt store too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from perfci import utc
from perfci.errors import ConfigError
from perfci.report import github, markdown, summary
from perfci.report.markdown import Dashboard
from perfci.report.silence import Silence
from perfci.report.summary import Bisect, Summary
from perfci.verdicts import ab, abstats, findings
from perfci.verdicts.findings import Finding

LABEL = "perfci"  # perfci looks for its issues among those with this label
ISSUE_LABELS = (LABEL, "performance-regression")
CONTEXT = "perfci"  # the commit status's context and the check run's name


@dataclass(frozen=True)
class IssuePlan:
    """What the issue of one finding should say, and whether to open it (when missing) or close it."""

    finding: Finding
    marker: str
    title: str
    body: str
    open_new: bool  # an open, confirmed finding: create its issue when there is none
    closing_comment: str | None  # fixed or dismissed: close its issue, saying this
    bisect_comments: tuple[tuple[str, str], ...]  # (marker, body) for each finished bisection


@dataclass(frozen=True)
class SilencePlan:
    """The one missing-data issue: open (or reopened) with `body` while any series is silent, else closed."""

    silences: tuple[Silence, ...]
    title: str
    body: str
    closing_comment: str


@dataclass(frozen=True)
class Plan:
    markdown: str  # the summary, within the job summary's limit
    comment: str | None  # the pull request comment (with its marker), within a comment's limit
    status: tuple[str, str] | None  # commit status state and description
    check: tuple[str, str, str] | None  # check run conclusion, title and summary
    issues: tuple[IssuePlan, ...]
    silence: SilencePlan | None = None
    unfiled: tuple[Finding, ...] = ()  # open, trend-confirmed findings no A/B session has reproduced (yet)


def silence_for(db: Database, config_path: Path, *, now: datetime) -> SilencePlan:
    """The missing-data issue's plan from the store and a watch config (its [alerts] silent_after_hours)."""
    from perfci.ops import watch
    from perfci.report import silence

    config = watch.load_config(config_path)
    return silence_plan(silence.check(db, config, now=now), silent_after_hours=config.alerts.silent_after_hours,
                        now=utc.stamp(now))  # fmt: skip


def silence_plan(silences: list[Silence], *, silent_after_hours: float, now: str) -> SilencePlan:
    return SilencePlan(tuple(silences), markdown.silence_title(silences),
                       markdown.silence_issue(silences, silent_after_hours=silent_after_hours),
                       markdown.silence_closing_comment(now))  # fmt: skip


def plan(s: Summary, stored: list[Finding], bisects: list[Bisect], dashboard: Dashboard, *, pr: bool, commit: bool,
         issues: bool) -> Plan:  # fmt: skip
    """Everything a report would post: the comment when `pr`, a status and check run when there is a `commit`,
    an issue for each stored finding that has (or needs) one when `issues`."""
    counts = {v: n for v in findings.VERDICTS if (n := sum(x.verdict == v for x in s.verdicts))}
    said = ", ".join(f"{n} {v}" for v, n in counts.items() if v != "unchanged") or "nothing moved"
    description = f"{said} in {len(s.verdicts)} series"
    state = "failure" if s.failing else "success"
    check_text = markdown.summary(s, dashboard, fits=markdown.fits_check_run, marker=None)
    return Plan(
        markdown=markdown.summary(s, dashboard, fits=markdown.fits_step_summary, marker=None),
        comment=markdown.summary(s, dashboard) if pr else None,
        status=(state, description) if commit else None,
        check=(state, f"perfci: {description}", check_text) if commit else None,
        issues=tuple(_issue_plan(f, bisects, dashboard) for f in stored if _has_issue(f)) if issues else (),
        unfiled=tuple(f for f in stored if f.status == "open" and f.confirmed and not _filable(f)) if issues else (),
    )


def plan_ab(session: ab.Session, *, pr: bool, commit: bool) -> Plan:
    """An A/B session's report: the comment when `pr`, and a status and check run (failure only for FAIL)."""
    state = "failure" if session.verdict == abstats.FAIL else "success"
    description = f"A/B {session.verdict}: {session.reason}"[:140]  # GitHub's limit on a status description
    return Plan(
        markdown=markdown.ab_summary(session, fits=markdown.fits_step_summary, marker=None),
        comment=markdown.ab_summary(session) if pr else None,
        status=(state, description) if commit else None,
        check=(state, f"perfci: {description}", markdown.ab_summary(session, fits=markdown.fits_check_run,
                                                                     marker=None)) if commit else None,
        issues=(),
    )  # fmt: skip


def _has_issue(f: Finding) -> bool:
    """A finding is filed once an A/B session on its hardware reproduced it (`_filable`); an issue filed earlier
    is kept up to date (and closed when fixed or dismissed) whatever a later session says."""
    return f.ab is not None or f.status != "open"


def _filable(f: Finding) -> bool:
    return f.status == "open" and f.confirmed and f.ab_outcome == "confirmed"


def _unfiled_reason(f: Finding) -> str:
    if f.ab is None:
        return f"no A/B session has re-measured it (perfci confirm {f.id})"
    return f"A/B session {f.ab.session_id}: {f.ab.outcome}"


def _issue_plan(f: Finding, bisects: list[Bisect], dashboard: Dashboard) -> IssuePlan:
    mine = [b for b in bisects if b.regression_id == f.id]
    done = [b for b in mine if b.status == "done"]
    closing = markdown.closing_comment(f) if f.status in ("fixed", "false-positive") else None
    return IssuePlan(f, markdown.finding_marker(f), markdown.issue_title(f, markdown.latest_culprit(mine)),
                     markdown.issue(f, mine, dashboard), _filable(f), closing,
                     tuple((markdown.bisect_marker(b), markdown.bisect_comment(b)) for b in done))  # fmt: skip


def apply(p: Plan, repo: github.Repository, *, pr: int | None, sha: str | None, details_url: str | None,
          say: Callable[[str], None] = lambda line: None) -> None:  # fmt: skip
    """Post `p`. Each step goes on when an earlier one failed; every failure is raised together at the end."""
    errors: list[str] = []

    def step(action: Callable[[], str | None]) -> None:
        try:
            line = action()
        except github.GitHubError as e:
            errors.append(str(e))
            return
        if line:
            say(line)

    if p.comment is not None and pr is not None:
        step(lambda: f"pull request #{pr}: comment {repo.upsert_comment(pr, markdown.SUMMARY_MARKER, p.comment)}")
    if (p.status or p.check) and sha is None and pr is not None:
        try:
            sha = repo.head_sha(pr)
        except github.GitHubError as e:
            errors.append(str(e))
    if p.status is not None and sha is not None:
        state, description = p.status
        step(lambda: repo.set_status(sha, state=state, description=description, context=CONTEXT,
                                     target_url=details_url) or f"status {state} on {sha[:12]}")  # fmt: skip
    if p.check is not None and sha is not None and repo.installation:
        conclusion, title, text = p.check
        step(lambda: repo.create_check_run(sha, name=CONTEXT, conclusion=conclusion, title=title, summary=text,
                                           details_url=details_url)
             or f"check run {conclusion} on {sha[:12]}")  # fmt: skip
    for f in p.unfiled:
        say(f"finding {f.id}: not filed: {_unfiled_reason(f)}")
    if p.issues:
        step(lambda: _issues(p.issues, repo, say))
    if p.silence is not None:
        step(lambda: _silence(p.silence, repo))
    if errors:
        raise github.GitHubError("\n".join(errors))


def _issues(plans: tuple[IssuePlan, ...], repo: github.Repository, say: Callable[[str], None]) -> None:
    existing = repo.marked_issues(LABEL, markdown.FINDING_MARKER)
    for ip in plans:
        issue = existing.get(ip.marker)
        f = ip.finding
        if issue is None:
            if not ip.open_new:
                continue
            issue = repo.create_issue(title=ip.title, body=ip.body, labels=list(ISSUE_LABELS))
            say(f"finding {f.id}: opened issue #{issue.number} {issue.html_url}")
        else:
            # Closed once only: an issue a person reopened after perfci closed it (its closing comment is
            # there) stays open. Closed before the comment, so a failed close is tried again next time.
            closing = (ip.closing_comment is not None and issue.state == "open"
                       and not repo.has_comment(issue.number, markdown.fixed_marker(f)))  # fmt: skip
            if closing or (issue.title, issue.body) != (ip.title, ip.body):
                repo.update_issue(issue.number, title=ip.title, body=ip.body, state="closed" if closing else None)
                say(f"finding {f.id}: {'closed' if closing else 'updated'} issue #{issue.number}")
            if closing:
                repo.upsert_comment(issue.number, markdown.fixed_marker(f), ip.closing_comment)
        for marker, body in ip.bisect_comments:
            if repo.upsert_comment(issue.number, marker, body) != "unchanged":
                say(f"finding {f.id}: bisect result on issue #{issue.number}")


def _silence(sp: SilencePlan, repo: github.Repository) -> str | None:
    """Keep one missing-data issue: opened (or reopened) while a series is silent, closed when none is."""
    issue = repo.marked_issues(LABEL, re.compile(re.escape(markdown.SILENCE_MARKER))).get(markdown.SILENCE_MARKER)
    if sp.silences:
        if issue is None:
            issue = repo.create_issue(title=sp.title, body=sp.body, labels=[LABEL, "missing-data"])
            return f"missing data: opened issue #{issue.number} {issue.html_url}"
        if issue.state == "open" and (issue.title, issue.body) == (sp.title, sp.body):
            return None
        repo.update_issue(issue.number, title=sp.title, body=sp.body, state="open")
        return f"missing data: {'updated' if issue.state == 'open' else 'reopened'} issue #{issue.number}"
    if issue is None or issue.state != "open":
        return None
    # The body says data is back; the title keeps naming what was silent, for whoever reads the closed issue.
    repo.update_issue(issue.number, title=issue.title, body=sp.body, state="closed")
    repo.upsert_comment(issue.number, markdown.SILENCE_CLOSED_MARKER, sp.closing_comment)
    return f"missing data: closed issue #{issue.number} (every series has data again)"


def describe(p: Plan, *, pr: int | None, sha: str | None, job_summary: bool = False) -> str:
    """`--dry-run`: what a report would write and post, bodies included."""
    where = sha[:12] if sha else f"the head of pull request #{pr}"
    out = []
    if job_summary:
        out += [f"--- would append to $GITHUB_STEP_SUMMARY ({len(p.markdown.encode())} bytes):", p.markdown]
    if p.comment is not None:
        out += [f"--- would upsert the perfci comment on pull request #{pr} ({len(p.comment)} characters):",
                p.comment]  # fmt: skip
    if p.status is not None:
        out.append(f"--- would set commit status {CONTEXT!r} on {where}: {p.status[0]}: {p.status[1]}")
    if p.check is not None:
        out.append(f"--- would create check run {CONTEXT!r} on {where} ({p.check[0]}), with a GitHub App "
                   "installation token only")  # fmt: skip
    for ip in p.issues:
        action = "open (when missing) or update" if ip.open_new else "update (when it exists)"
        action += " and close" if ip.closing_comment else ""
        out += [f"--- would {action} the issue of finding {ip.finding.id}: {ip.title}", ip.body]
        out += [f"--- would post or update on it:\n{body}" for _, body in ip.bisect_comments]
    out += [f"--- would not file finding {f.id} ({f.first_bad} on {f.hardware_label}): {_unfiled_reason(f)}"
            for f in p.unfiled]  # fmt: skip
    if p.silence is not None and p.silence.silences:
        out += [f"--- would open (when missing), reopen or update the missing-data issue: {p.silence.title}",
                p.silence.body]  # fmt: skip
    elif p.silence is not None:
        out.append("--- no series is silent: would close the missing-data issue if it is open")
    if not out:
        out.append("--- nothing to post (give --pr, --sha, --issue-on-regression, --issue-on-silence or --summary)")
    return "\n".join(out)


@dataclass
class Outcome:
    plan: Plan
    posted: list[str] = field(default_factory=list)
    summary_path: Path | None = None


def report(db: Database, *, baseline: str | None = None, candidate: str | None = None, pr: int | None = None,
           sha: str | None = None, issues: bool = False, summary_path: Path | None = None, dry_run: bool = False,
           dashboard_url: str | None = None, repo: str | None = None, api_url: str | None = None,
           token: str | None = None, bot_login: str | None = None, details_url: str | None = None,
           connect: Callable[[str | None, str], Any] = github.connect, say: Callable[[str], None] = lambda line: None,
           min_effect: float = findings.MIN_EFFECT, silence: SilencePlan | None = None,
           ab_session: str | None = None) -> Outcome:  # fmt: skip
    """Report on `--baseline A --candidate B`, on an A/B session (`ab_session`: its id or `latest`), or on the
    newest detect pass: append the summary to
    `summary_path` (the job summary) first, then post to GitHub unless `dry_run`. A GitHub failure raises
    GitHubError after the summary is written. `details_url` (the page a status links to) defaults to the
    dashboard's overview. `silence` (silence_plan): keep the missing-data issue too; given alone, nothing
    else is reported, so it needs no detect pass. `ab_session`: report that `perfci ab` session instead."""
    if (baseline is None) != (candidate is None):
        raise ConfigError("give both --baseline and --candidate, or neither (to report the newest `perfci detect`)")
    if ab_session is not None and baseline is not None:
        raise ConfigError("give --ab or --baseline/--candidate, not both")
    posting = pr is not None or sha is not None or issues or silence is not None
    if posting and not dry_run and not repo:
        raise ConfigError("no repository: give --repo OWNER/NAME or set $GITHUB_REPOSITORY")
    dashboard = Dashboard(dashboard_url)
    if ab_session is not None:
        p = replace(plan_ab(ab.load_session(db, _session_id(ab_session)), pr=pr is not None,
                            commit=pr is not None or sha is not None), silence=silence)  # fmt: skip
    elif silence is not None and baseline is None and not (pr or sha or issues or summary_path):
        p = Plan(markdown="", comment=None, status=None, check=None, issues=(), silence=silence)
    else:
        s = (summary.of_comparison(db, baseline, candidate, min_effect=min_effect) if baseline is not None
             else summary.of_latest_detect(db))  # fmt: skip
        stored = findings.regressions(db) if issues else []
        p = replace(plan(s, stored, summary.bisects(db) if issues else [], dashboard, pr=pr is not None,
                         commit=pr is not None or sha is not None, issues=issues), silence=silence)  # fmt: skip
    outcome = Outcome(p)
    if dry_run:
        return outcome
    if summary_path is not None:
        with open(summary_path, "a", encoding="utf-8") as out:
            out.write(p.markdown)
        outcome.summary_path = summary_path
    if not posting:
        return outcome
    if not token:
        raise github.GitHubError("$GITHUB_TOKEN is not set: it is needed to post to GitHub")
    gh = connect(api_url, token)
    handle = github.Repository(gh, repo, bot_login=bot_login)

    def posted(line: str) -> None:
        outcome.posted.append(line)
        say(line)

    apply(p, handle, pr=pr, sha=sha, details_url=dashboard.index() or details_url, say=posted)
    return outcome


def _session_id(text: str) -> int | None:
    if text == "latest":
        return None
    if not text.isdigit():
        raise ConfigError(f"--ab {text!r}: give an A/B session id (perfci ab prints it) or `latest`")
    return int(text)


def actions_run_url(environ: Mapping[str, str] = os.environ) -> str | None:
    """This GitHub Actions run's page, when running in one."""
    parts = [environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    return f"{parts[0]}/{parts[1]}/actions/runs/{parts[2]}" if all(parts) else None
