"""Markdown for GitHub, from jinja2 templates (templates/*.md.j2): the comparison summary (a pull request
comment, the job summary, a check run), a regression finding's issue, and a bisection's comment. Pure: every
function returns a string; engine strings, build labels and commit subjects are escaped as untrusted text.

A summary stays under its limit by summarising: it drops detail a level at a time (the full table's unchanged
rows, the full table, the startup table, then rows of the main table beyond a count, each time saying what was
left out), so a table is always whole.
"""

from __future__ import annotations

import importlib.resources
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from urllib.parse import quote, urlencode

import jinja2

from perfci import resources
from perfci.metrics import STARTUP_PREFIX, STARTUP_WORKLOAD, format_value, label
from perfci.report.silence import Silence
from perfci.report.summary import Bisect, Section, Summary
from perfci.verdicts import ab
from perfci.verdicts.findings import VERDICTS, Finding, Member, SeriesVerdict
from perfci.verdicts.series import SeriesKey

COMMENT_LIMIT = 65_536  # characters: GitHub's limit on a comment or an issue body
CHECK_RUN_LIMIT = 65_535  # characters: a check run's output.summary
STEP_SUMMARY_LIMIT = 1024 * 1024  # bytes: GitHub's limit on one step's job summary
SUMMARY_MARKER = "<!-- perfci:summary -->"
NOTABLE = ("regression", "failed", "improvement")  # the rows of the main table

ICONS = {"regression": "🔴", "failed": "❌", "improvement": "🟢", "inconclusive": "🟡", "no-baseline": "⚪",
         "unchanged": "▫️"}  # fmt: skip


def fits_comment(text: str) -> bool:
    return len(text) <= COMMENT_LIMIT


def fits_check_run(text: str) -> bool:
    return len(text) <= CHECK_RUN_LIMIT


def fits_step_summary(text: str) -> bool:
    return len(text.encode()) <= STEP_SUMMARY_LIMIT


@dataclass(frozen=True)
class Dashboard:
    """Links into the dashboard site at `base` (no links when None). Its pages: index.html, trends.html?…,
    load.html, startup.html?engine=&hardware=, runs/<run_id>.html."""

    base: str | None

    def _page(self, path: str, **query: str) -> str | None:
        if self.base is None:
            return None
        return f"{self.base.rstrip('/')}/{path}" + (f"?{urlencode(query)}" if query else "")

    def index(self) -> str | None:
        return self._page("index.html")

    def run(self, run_id: str) -> str | None:
        return self._page(f"runs/{quote(run_id)}.html")

    def series(self, key: SeriesKey) -> str | None:
        """A startup series' startup page, any other series' trend."""
        if key.workload == STARTUP_WORKLOAD:
            return self._page("startup.html", engine=key.engine, hardware=key.hardware_label)
        return self._page("trends.html", engine=key.engine, model=key.model, hardware=key.hardware_label,
                          suite=key.suite, workload=key.workload, load=key.load_label, metric=key.metric)  # fmt: skip


# --- markers: how perfci finds what it wrote, without any state of its own --------------------------------------

def _marker(kind: str, *parts: str) -> str:
    # Quoted, so a part can hold neither "/" (the separator) nor "-->" (the end of the HTML comment).
    return f"<!-- perfci:{kind} {'/'.join(quote(p, safe='=.@+:') for p in parts)} -->"


def finding_marker(f: Finding) -> str:
    return _marker("finding", f.engine, f.hardware_label, f.suite, f.first_bad)


def bisect_marker(b: Bisect) -> str:
    return _marker("bisect", str(b.id))


def fixed_marker(f: Finding) -> str:
    return _marker("closed", f.engine, f.hardware_label, f.suite, f.first_bad)


SILENCE_MARKER = "<!-- perfci:silence -->"  # the one missing-data issue
SILENCE_CLOSED_MARKER = "<!-- perfci:silence-closed -->"
FINDING_MARKER = re.compile(r"<!-- perfci:finding \S+ -->")


# --- formatting ---------------------------------------------------------------------------------------------------

_SPECIAL = re.compile(r"([\\`*_{}\[\]|~])")  # with [ and ] escaped, ( ) ! make no link or image
_MENTION = re.compile(r"(?<!\w)@(?=\w)")


def md(text: object) -> str:
    """Untrusted text, inert in GitHub markdown: no markup, no HTML, no table breaks, no @mentions."""
    s = " ".join(str(text).split())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _SPECIAL.sub(r"\\\1", s)
    return _MENTION.sub("@\u200b", s)  # a zero-width space after @ keeps a commit subject from pinging anyone


def url(target: str | None) -> str:
    """A link target from untrusted data (a bisect's culprit URL): http(s) only, with nothing that ends the link."""
    if not target or not target.startswith(("https://", "http://")):
        return ""
    return quote(target, safe=":/?#&=%+@,;~.-_!$*'")


def pct(v: float | None) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:+.1%}"


def change(v: SeriesVerdict | Member | Finding) -> str:
    """`+12.0% [+10.1%, +14.2%]`: the change and its 99% interval, where there is one."""
    if v.rel_change is None:
        return "—"
    interval = f" [{pct(v.ci_low)}, {pct(v.ci_high)}]" if v.ci_low is not None and v.ci_high is not None else ""
    return pct(v.rel_change) + interval


def pvalue(p: float | None) -> str:
    return "—" if p is None else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def verdict(v: str) -> str:
    return f"{ICONS[v]} {v.replace('-', ' ')}"


def series_verdict(v: SeriesVerdict) -> str:
    """A series' verdict, saying why when the candidate has too few values to ever decide."""
    return verdict(v.verdict) + (f" ({v.cannot_decide})" if v.cannot_decide else "")


def severity(v: SeriesVerdict) -> tuple:
    return VERDICTS.index(v.verdict), -abs(v.rel_change or 0.0), v.key


def issue_title(f: Finding, bisect: Bisect | None) -> str:
    """`sim==0.2.0 made TTFT p50 12.0% worse on cpu-2c at c=4 (smoke); bisected to sim@abc (confidence 97%)`."""
    m = f.representative
    title = f"{f.first_bad} made a series worse on {f.hardware_label} ({f.suite})"
    if m is not None:
        where = "at startup" if m.key.workload == STARTUP_WORKLOAD else f"at {m.key.load_label}"
        title = (f"{f.first_bad} made {label(m.key.metric)} {abs(m.rel_change):.1%} worse on "
                 f"{f.hardware_label} {where} ({f.suite})")  # fmt: skip
    if bisect is not None and bisect.outcome == "culprit" and bisect.culprit:
        confidence = f" (confidence {bisect.confidence:.0%})" if bisect.confidence is not None else ""
        title += f"; bisected to {bisect.culprit}{confidence}"
    return " ".join(title.split())[:256]  # GitHub refuses longer titles


def latest_culprit(bisects: list[Bisect] | tuple[Bisect, ...]) -> Bisect | None:
    return next((b for b in bisects if b.status == "done" and b.outcome == "culprit"), None)


# --- rendering ----------------------------------------------------------------------------------------------------

@cache
def _env() -> jinja2.Environment:
    templates = importlib.resources.files("perfci.report") / "templates"
    env = jinja2.Environment(loader=resources.template_loader(templates), autoescape=False,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)  # fmt: skip
    env.filters.update(md=md, url=url, pct=pct, change=change, pvalue=pvalue, verdict=verdict,
                       series_verdict=series_verdict, metric_name=label)  # fmt: skip
    env.globals.update(value=format_value, ICONS=ICONS)
    return env


def _render(template: str, **context) -> str:
    text = _env().get_template(template).render(**context)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


@dataclass(frozen=True)
class Detail:
    """How much a summary shows: rows of the main table per section (None: all), the startup table, and the
    collapsed full table: every series, the ones not unchanged, or none."""

    main_rows: int | None
    startup: bool
    full_table: str  # all | changed | none


LADDER = (
    Detail(None, True, "all"),
    Detail(None, True, "changed"),
    Detail(None, True, "none"),
    Detail(None, False, "none"),
    Detail(50, False, "none"),
    Detail(10, False, "none"),
    Detail(0, False, "none"),
)


def summary(s: Summary, dashboard: Dashboard, *, fits: Callable[[str], bool] = fits_comment,
            marker: str | None = SUMMARY_MARKER) -> str:  # fmt: skip
    """The comparison summary, at the most detail that `fits` (a comment's limit by default)."""
    for detail in LADDER:
        sections = [_section(sec, dashboard, detail) for sec in s.sections]
        text = _render("summary.md.j2", title=s.title, sections=sections, dashboard=dashboard, marker=marker,
                       findings=[_finding(f, s.bisects, dashboard) for f in s.findings])  # fmt: skip
        if fits(text):
            return text
    return text  # counts and findings only: the least a summary says


AB_ICONS = {"FAIL": "🔴", "INCONCLUSIVE": "🟡", "IMPROVED": "🟢", "PASS": "✅"}
_AB_ORDER = {"FAIL": 0, "INCONCLUSIVE": 1, "IMPROVED": 2, "PASS": 3}


def ab_summary(session: ab.Session, *, fits: Callable[[str], bool] = fits_comment,
               marker: str | None = SUMMARY_MARKER) -> str:  # fmt: skip
    """An A/B session (`perfci ab`): its verdict and every series, worst first; when that is too long, the
    series that did not pass, then none (always whole rows)."""
    series = sorted(session.judgement.series, key=lambda v: (_AB_ORDER[v.verdict], v.name))
    counts = {v: n for v in _AB_ORDER if (n := sum(x.verdict == v for x in series))}
    not_passed = [v for v in series if v.verdict != "PASS"]
    text = ""
    for rows, passed_only in ((series, False), (not_passed, True), ([], False)):
        text = _render("ab.md.j2", s=session, counts=counts, rows=rows, left_out=len(series) - len(rows),
                       passed_only=passed_only, marker=marker, AB_ICONS=AB_ICONS)  # fmt: skip
        if fits(text):
            break
    return text


def _section(sec: Section, dashboard: Dashboard, detail: Detail) -> dict:
    scopes = {(v.key.engine, v.key.hardware_label, v.key.suite) for v in sec.verdicts}
    one_scope = len(scopes) == 1
    models = {v.key.model for v in sec.verdicts}

    def row(v: SeriesVerdict) -> dict:
        k = v.key
        parts = ([] if one_scope else [k.hardware_label, k.suite]) + ([] if len(models) == 1 else [k.model])
        where = f"{'startup' if k.workload == STARTUP_WORKLOAD else k.workload} · {k.load_label}"
        return {"v": v, "series": " · ".join([*parts, where]), "metric": k.metric, "link": dashboard.series(k),
                "baseline": format_value(k.metric, v.baseline),
                "candidate": format_value(k.metric, v.candidate)}  # fmt: skip

    notable = sorted((v for v in sec.verdicts if v.verdict in NOTABLE), key=severity)
    shown = notable if detail.main_rows is None else notable[: detail.main_rows]
    startup = sorted((v for v in sec.verdicts if v.key.workload == STARTUP_WORKLOAD),
                     key=lambda v: (v.key.model, v.key.load_label, v.key.metric != STARTUP_PREFIX + "total",
                                    v.key.metric))  # fmt: skip
    full = {"all": list(sec.verdicts), "changed": [v for v in sec.verdicts if v.verdict != "unchanged"],
            "none": []}[detail.full_table]  # fmt: skip
    engine, hardware, suite = next(iter(scopes)) if one_scope else (None, None, None)
    return {
        "candidate": sec.candidate, "baseline": sec.baseline, "counts": sec.counts(), "total": len(sec.verdicts),
        "engine": engine, "hardware": hardware, "suite": suite,
        "runs": [(r[:8], dashboard.run(r)) for r in sec.candidate.run_ids],
        "rows": [row(v) for v in shown], "rows_left_out": len(notable) - len(shown),
        "startup": [row(v) for v in startup] if detail.startup else [],
        "startup_left_out": bool(startup) and not detail.startup,
        "full": [row(v) for v in sorted(full, key=lambda v: v.key)], "full_table": detail.full_table,
        "unchanged_left_out": sum(v.verdict == "unchanged" for v in sec.verdicts),
    }  # fmt: skip


def _finding(f: Finding, bisects: tuple[Bisect, ...], dashboard: Dashboard) -> dict:
    mine = [b for b in bisects if b.regression_id == f.id]
    m = f.representative
    return {"f": f, "member": m, "link": dashboard.series(m.key) if m else None, "bisect": latest_culprit(mine),
            "bisects": mine}  # fmt: skip


def issue(f: Finding, bisects: list[Bisect], dashboard: Dashboard) -> str:
    """The body of a regression finding's issue: what moved, by how much, how to act; its bisections."""
    members = sorted(f.members, key=lambda m: (m.pending, m.pvalue, -abs(m.rel_change)))
    rows = [{"m": m, "link": dashboard.series(m.key),
             "series": f"{m.key.model} · {'startup' if m.key.workload == STARTUP_WORKLOAD else m.key.workload} · "
                       f"{m.key.load_label}"} for m in members]  # fmt: skip
    context = {"f": f, "marker": finding_marker(f), "member": f.representative, "bisects": bisects,
               "dashboard": dashboard}  # fmt: skip
    for shown in (len(rows), 50, 10):  # a finding can move hundreds of series: keep the body under the limit
        text = _render("issue.md.j2", rows=rows[:shown], left_out=len(rows) - min(shown, len(rows)), **context)
        if fits_comment(text):
            return text
    return text


def bisect_comment(b: Bisect) -> str:
    """A bisection's result, posted to its finding's issue once it is done."""
    return _render("bisect.md.j2", b=b, marker=bisect_marker(b))


def closing_comment(f: Finding) -> str:
    """Said on a finding's issue when perfci closes it (fixed, or dismissed as a false positive)."""
    return _render("closed.md.j2", f=f, marker=fixed_marker(f))


def _hours(h: float) -> str:
    return f"{h:g} hours" if h < 72 else f"{h / 24:g} days"


def silence_title(silences: list[Silence]) -> str:
    """`No benchmark data from vllm on h100, sglang on h100 since 2026-11-20`."""
    series = ", ".join(f"{s.package} on {s.hardware_label}" for s in silences) or "no series"
    since = min((s.since for s in silences), default="")[:10]
    return " ".join(f"No benchmark data from {series} since {since}".split())[:256]


def silence_issue(silences: list[Silence], *, silent_after_hours: float) -> str:
    """The missing-data issue's body: each silent series, since when, its newest run, the jobs waiting."""
    return _render("silence.md.j2", marker=SILENCE_MARKER, silences=silences, hours=_hours(silent_after_hours))


def silence_closing_comment(now: str) -> str:
    """Said on the missing-data issue when perfci closes it."""
    return _render("silence-closed.md.j2", marker=SILENCE_CLOSED_MARKER, now=now)
