"""Terminal tables (rich) built from run records and store frames. Pure: they return renderables; the CLI
prints them.

Every title, header and cell is a rich Text, never a str: rich parses markup in strs, and names, labels,
paths and error messages are user data whose brackets ("[/y]") would be misread as tags or make printing
raise. Styles are given as Text styles instead."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from perfci.measure.clocks import Check
from perfci.store.records import RunRecord, Startup

if TYPE_CHECKING:
    import pandas as pd  # only frames passed in: importing pandas costs every CLI command ~0.5 s


def _table(title: str | Text, *, caption: str | None = None, **kwargs: Any) -> Table:
    # rich styles only str titles and captions itself
    heading = Text(title) if isinstance(title, str) else title
    heading.style = "table.title"
    return Table(title=heading, caption=None if caption is None else Text(caption, style="table.caption"), **kwargs)


def _columns(t: Table, *names: str, right: tuple[str, ...] = ()) -> None:
    for name in names:
        t.add_column(Text(name), justify="right" if name in right else "left")


def _row(t: Table, *cells: str | Text) -> None:
    t.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def _ms(v: Any) -> str:
    return "—" if v is None else f"{v:,.1f}"


def _num(v: Any, fmt: str = ",.2f") -> str:
    return "—" if v is None else format(v, fmt)


def points_table(record: RunRecord) -> Table:
    title = Text(f"{record.suite.name} on {record.build.engine} {record.build.version or ''}")
    if record.build.engine == "sim":
        title.append("  (sim engine: a SIMULATOR, not a real engine)", style="bold magenta")
    if record.build.kernels:
        title.append(f"  (kernels: {record.build.kernels})", style="bold yellow")
    t = _table(title, caption=f"latencies in ms · run {record.run_id} · {record.hardware.label} · "
                              f"status {record.status}")  # fmt: skip
    columns = ("workload", "load", "rep", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99",
               "E2E p50", "E2E p99", "errors")  # fmt: skip
    _columns(t, *columns, right=columns[2:])
    for p in record.points:
        m = p.metrics
        if p.status == "skipped":
            _row(t, p.workload, p.load_label, str(p.repeat), *["—"] * 8, Text(f"skipped: {p.error}", style="yellow"))
            continue
        errors: str | Text = f"{m['errors']}/{m['requests']}" if m.get("requests") else "—"
        if p.status in ("failed", "degraded"):
            kinds = ", ".join(f"{kind} {n}" for kind, n in (m.get("errors_by_kind") or {}).items())
            why = kinds or (p.error or "").splitlines()[0][:80]  # no failed request: it stopped, or the engine died
            errors = Text(f"{p.status}: {errors} {why}", style="red" if p.status == "failed" else "yellow")
        _row(  # a failed point may have no metrics at all
            t, p.workload, p.load_label, str(p.repeat), _num(m.get("request_rate")),
            _num(m.get("output_throughput"), ",.0f"),
            *(_ms((m.get(key) or {}).get(stat)) for key in ("ttft_ms", "itl_ms", "e2e_ms") for stat in ("p50", "p99")),
            errors,
        )  # fmt: skip
    return t


def startup_table(record: RunRecord) -> Table | None:
    """One column per start, one row per phase (phases differ between engines and versions)."""
    if not record.startups:
        return None
    phases: list[str] = []
    for s in record.startups:
        phases += [k for k in s.phases if k not in phases]
    t = _table("startup (s)", caption="at_* = since spawn · unreported = time no log line reports")
    heads = [f"{s.model} ({s.cache})" for s in record.startups]
    _columns(t, "phase", *heads, right=tuple(heads))
    _row(t, "ready", *["yes" if s.ready else Text("no", style="red") for s in record.startups])
    _row(t, "total", *[_num(s.total_s) for s in record.startups])
    if any(s.caches is not None for s in record.startups):
        _row(t, "caches before", *[_caches_before(s) for s in record.startups])
    if any(s.weights is not None for s in record.startups):
        _row(t, "weights in page cache", *[_resident(s) for s in record.startups])
    for k in phases:
        _row(t, k, *[_num(s.phases.get(k)) for s in record.startups])
    return t


def _caches_before(s: Startup) -> str:
    """What the start found in the caches that decide its label: files and size, or why nothing counts."""
    if s.caches is None:
        return "not measured"
    deciding = [c for c in s.caches.values() if c.decides]
    if not deciding:
        return "none used"
    files, size = sum(c.entries for c in deciding), sum(c.bytes for c in deciding)
    if not files:
        return "empty"
    amount = f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"
    return f"{files} file{'s' if files != 1 else ''}, {amount}"


def _resident(s: Startup) -> str:
    w = s.weights
    if w is None:
        return "-"
    share = w.resident_bytes / w.bytes if w.bytes else 0.0
    return f"{share:.0%}" + (" (dropped)" if w.dropped else "")


def runs_table(frame: pd.DataFrame) -> Table:
    t = _table("stored runs")
    cols = ("run_id", "created", "suite", "engine", "version", "kernels", "hardware_label", "status")
    _columns(t, *cols, "points ok")
    for row in frame.itertuples(index=False):
        _row(t, *[_cell(getattr(row, c, None)) for c in cols], f"{row.points_ok}/{row.points}")
    return t


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return str(v)



def envs_table(infos) -> Table:
    t = _table("build environments")
    _columns(t, "build", "size", "last used", "complete", "path")
    for i in infos:
        used = datetime.fromtimestamp(i.last_used, UTC).strftime("%Y-%m-%d %H:%M")
        _row(t, i.spec or "?", f"{i.size_bytes / 2**30:.2f} GiB", used,
             "yes" if i.complete else Text("no", style="red"), str(i.path))  # fmt: skip
    return t


def doctor_table(fp: dict[str, Any], problems: list[str], settings: Sequence[Check] = ()) -> Table:
    t = _table(f"hardware: {fp['label']}", show_header=False)
    _columns(t, "key", "value")
    for key, value in fp.items():
        if key == "gpus":
            for i, gpu in enumerate(value):
                _row(t, f"gpu {i}", f"{gpu['name']} · {gpu['memory_gib']} GiB · {gpu['uuid']}")
        else:
            _row(t, key, str(value))
    _row(t, "preflight", "clean" if not problems else Text("; ".join(problems), style="red"))
    for c in settings:
        _row(t, c.name, c.value if c.ok is not False else Text(f"{c.value}: {c.advice}", style="yellow"))
    return t


_VERDICT_STYLE = {"regression": "bold red", "failed": "bold red", "improvement": "green", "inconclusive": "yellow",
                  "no-baseline": "dim", "unchanged": ""}  # fmt: skip


def _verdict(v: str, label: str | None = None) -> Text:
    return Text(label or v, style=_VERDICT_STYLE.get(v, ""))


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:+.1%}"


def _ci(low: float | None, high: float | None) -> str:
    return "—" if low is None or high is None else f"[{low:+.1%}, {high:+.1%}]"


def _p(p: float | None) -> str:
    return "—" if p is None else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def _value(v: float | None) -> str:
    return "—" if v is None else f"{v:,.4g}"


def comparison_table(comparison) -> Table:
    """`perfci compare`: one row per series (findings.Comparison)."""
    a, b = comparison.baseline, comparison.candidate
    moved = sum(v.verdict in ("regression", "improvement") for v in comparison.verdicts)
    caption = (f"{len(comparison.verdicts)} series · {moved} moved (Benjamini–Hochberg over all of them) · "
               "values: medians of the repeats · change: candidate vs baseline")  # fmt: skip
    for side in (a, b):
        if side.kernels:
            caption += f" · {side.label} ran with kernels: {side.kernels}"
    if all(v.verdict in ("no-baseline", "failed") for v in comparison.verdicts):
        caption += " · no series in common: series match on model, hardware label, suite, workload and load"
    t = _table(f"{b.label} vs {a.label}", caption=caption)
    _columns(t, "hardware", "suite", "model", "workload", "load", "metric", "baseline", "candidate", "n", "change",
             "CI", "p", "verdict", right=("baseline", "candidate", "n", "change", "CI", "p"))  # fmt: skip
    for v in comparison.verdicts:
        k = v.key
        _row(t, k.hardware_label, k.suite, k.model, k.workload, k.load_label, k.metric, _value(v.baseline),
                  _value(v.candidate), f"{v.n_baseline}/{v.n_candidate}", _pct(v.rel_change),
             _ci(v.ci_low, v.ci_high), _p(v.pvalue), _verdict(v.verdict, v.cannot_decide))  # fmt: skip
    return t


def judgements_table(judged) -> Table:
    """`perfci detect`: one row per run judged (findings.RunJudgement), with how many series got each verdict."""
    t = _table("runs judged")
    _columns(t, "run", "build", "hardware", "suite", "baseline", "verdict", "series")
    for j in judged:
        counts = ", ".join(f"{n} {v}" for v, n in sorted(j.counts().items()))
        _row(t, j.run_id[:8], j.build, j.scope[1], j.scope[2], j.baseline.label if j.baseline else "—",
             _verdict(j.verdict), counts or "—")  # fmt: skip
    return t


def findings_table(findings, *, title: str = "regressions") -> Table:
    """Findings (findings.Finding): one row each, its representative member's change and the member count."""
    t = _table(title, caption="change, CI, p: the member series with the smallest p-value · "
                              "pending: a change at the newest builds, not yet confirmed")  # fmt: skip
    _columns(t, "id", "status", "engine", "hardware", "suite", "last good → first bad", "series", "change", "CI",
             "p", "last seen", "why", right=("id", "change", "CI", "p"))  # fmt: skip
    for f in findings:
        status = {"open": Text("open", style="bold red") if f.confirmed else "open (pending)",
                  "fixed": f"fixed in {f.fixed_in}" if f.fixed_in else "fixed"}.get(f.status, f.status)  # fmt: skip
        _row(t, str(f.id), status, f.engine, f.hardware_label, f.suite, f"{f.last_good or '?'} → {f.first_bad}",
             _members(f.members), _pct(f.rel_change), _ci(f.ci_low, f.ci_high), _p(f.pvalue),
             f.last_seen[:16].replace("T", " "), f.why or "")  # fmt: skip
    return t


def _members(members) -> str:
    metrics = list(dict.fromkeys(m.key.metric for m in members))
    shown = ", ".join(metrics[:3]) + (", …" if len(metrics) > 3 else "")
    return f"{len(members)}: {shown}"


def bisect_table(view) -> Table:
    """A bisect's candidates that have trials or were skipped, with P(bad) and the verdict so far."""
    row, result = view.row, view.result
    t = _table(f"bisect {row['id']}: {row['engine']} {row['metric']} · {row['workload']} {row['load_label']} "
               f"· {row['status']}", caption=bisect_summary(view))  # fmt: skip
    _columns(t, "#", "candidate", "subject", "trials", "median", "P(bad)", "verdict",
             right=("#", "trials", "median", "P(bad)"))  # fmt: skip
    for probe in result.probes:
        if probe.verdict == "untested":
            continue
        c = view.candidates[probe.index]
        samples = sorted(probe.samples)
        median = samples[len(samples) // 2] if samples else None
        colour = {"bad": "red", "good": "green", "skipped": "yellow"}.get(probe.verdict, "white")
        _row(t, str(probe.index), c.label[:12], c.subject[:60], str(len(samples)), _value(median),
             f"{probe.p_bad:.2f}", Text(probe.verdict, style=colour))  # fmt: skip
    return t


def bisect_summary(view) -> str:
    """One line: the culprit with its confidence and effect, or why there is none."""
    row = view.row
    if row["status"] != "done":
        return f"{row['status']}: {row['trials']} trials so far"
    if row["outcome"] == "culprit":
        link = f" {row['culprit_url']}" if row["culprit_url"] else ""
        subject = f" ({row['culprit_subject']})" if row["culprit_subject"] else ""
        return (f"culprit {row['culprit'][:12]}{subject}: {_pct(row['rel_change'])} "
                f"(confidence {row['confidence']:.0%}, {row['trials']} trials){link}")  # fmt: skip
    if row["outcome"] == "ambiguous" and view.result.suspects:
        first, last = view.result.suspects
        return (f"ambiguous: the change is in {view.candidates[first].label[:12]} … {view.candidates[last].label[:12]}"
                f" (candidates between could not be built or run; {row['trials']} trials)")  # fmt: skip
    if row["outcome"] == "cannot-reproduce":
        return f"cannot reproduce: {row['good']} and {row['bad']} do not differ (confidence {row['confidence']:.0%})"
    return f"inconclusive after {row['trials']} trials (best guess at {row['confidence']:.0%})"


def rows_table(rows: list[dict[str, Any]], *, title: str) -> Table:
    t = _table(title)
    _columns(t, *(rows[0] if rows else ()))
    for row in rows:
        _row(t, *(_cell(v) for v in row.values()))
    return t


_AB_STYLE = {"FAIL": "bold red", "IMPROVED": "green", "INCONCLUSIVE": "yellow", "PASS": ""}


def ab_table(session) -> Table:
    """`perfci ab`: one row per series (ab.Session), worst verdict first."""
    j = session.judgement
    order = {"FAIL": 0, "INCONCLUSIVE": 1, "IMPROVED": 2, "PASS": 3}
    rows = sorted(j.series, key=lambda s: order.get(s.verdict, 9))
    caption = (f"A/B session {session.id} · {len(session.blocks)} blocks (ABBA) on {session.hardware_label} · "
               f"verdict {j.verdict}: {j.reason} · change: candidate vs baseline, geometric means of blocks · "
               "CI 95% · MDE: smallest change this session detects (80% power) · "
               "p: Benjamini–Hochberg adjusted")  # fmt: skip
    t = _table(f"{session.candidate_build} vs {session.baseline_build} · {session.suite}", caption=caption)
    _columns(t, "series", "change", "CI", "MDE", "p", "n", "verdict", "why",
             right=("change", "CI", "MDE", "p", "n"))  # fmt: skip
    for s in rows:
        _row(t, s.name, _pct(s.change), _ci(s.low, s.high), "—" if s.mde is None else f"±{s.mde:.1%}",
             _p(s.p_adjusted), f"{s.n_baseline}/{s.n_candidate}", Text(s.verdict, style=_AB_STYLE.get(s.verdict, "")),
             s.reason)  # fmt: skip
    return t
