"""Golden markdown: the summary (every verdict, startup cold and warm, findings, bisects, links), issue bodies,
bisect and closing comments. PERFCI_UPDATE_GOLDEN=1 rewrites tests/report/golden/ instead of comparing; review
the diff before keeping it."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from perfci import metrics
from perfci.metrics import STARTUP_WORKLOAD
from perfci.report import markdown
from perfci.report.markdown import Dashboard
from perfci.report.silence import Silence
from perfci.report.summary import Bisect, Section, Summary
from perfci.verdicts.confirm import Confirmation
from perfci.verdicts.findings import Finding, Member, SeriesVerdict
from perfci.verdicts.series import Selection, SeriesKey

GOLDEN = Path(__file__).with_name("golden")
DASHBOARD = Dashboard("https://perf.example.org/site/")


def key(workload: str, load: str, metric: str, *, hardware: str = "h100-80gb", model: str = "llama-8b") -> SeriesKey:
    return SeriesKey("vllm", model, hardware, "advisor", workload, load, metric)


VERDICTS = (
    SeriesVerdict(key("chat", "r=8.0/s poisson", "ttft_ms_p50"), "regression", 40.0, 44.8, 0.12, 0.09, 0.15, 2e-5, 5, 5, True),
    SeriesVerdict(key("chat", "c=16", "output_throughput"), "improvement", 2100.0, 2310.5, 0.1002, 0.071, 0.13, 0.0008, 5, 5, True),
    SeriesVerdict(key("chat", "c=16", "tpot_ms_p99"), "unchanged", 8.2, 8.25, 0.006, -0.02, 0.03, 0.61, 5, 5, False),
    SeriesVerdict(key("chat", "c=16", "itl_ms_p99"), "inconclusive", 9.0, 9.81, 0.09, -0.01, 0.2, 0.03, 5, 5, False),
    SeriesVerdict(key("long-context", "sync", "e2e_ms_mean"), "no-baseline", None, 3120.0, n_candidate=5),
    SeriesVerdict(key("chat", "r=32.0/s poisson", "ttft_ms_p99"), "failed"),
    SeriesVerdict(key(STARTUP_WORKLOAD, "cold", "startup.total"), "regression", 95.0, 118.2, 0.244, 0.2, 0.29, 0.0011, 5, 5, True),
    SeriesVerdict(key(STARTUP_WORKLOAD, "cold", "startup.compile"), "regression", 48.0, 70.1, 0.46, 0.38, 0.52, 0.0011, 5, 5, True),
    SeriesVerdict(key(STARTUP_WORKLOAD, "cold", "startup.load_weights"), "unchanged", 12.0, 12.1, 0.008, -0.01, 0.02, 0.7, 5, 5, False),
    SeriesVerdict(key(STARTUP_WORKLOAD, "warm", "startup.total"), "unchanged", 31.0, 31.2, 0.006, -0.02, 0.03, 0.8, 5, 5, False),
    SeriesVerdict(key(STARTUP_WORKLOAD, "warm", "startup.compile"), "improvement", 6.0, 4.1, -0.32, -0.4, -0.25, 0.0011, 5, 5, True),
)
BASELINE = Selection("vllm==0.32.0", "vllm==0.32.0", ("0b7f1c2e-0000-4000-8000-000000000001",))
CANDIDATE = Selection("vllm==0.33.0", "vllm==0.33.0", ("9a8b7c6d-0000-4000-8000-000000000002",
                                                       "5e4d3c2b-0000-4000-8000-000000000003"))  # fmt: skip
MEMBERS = (
    Member(VERDICTS[0].key, "compare", "vllm==0.32.0", "vllm==0.33.0", 0.12, 0.09, 0.15, 2e-5, False),
    Member(VERDICTS[6].key, "compare", "vllm==0.32.0", "vllm==0.33.0", 0.244, 0.2, 0.29, 0.0011, False),
    Member(key("chat", "r=8.0/s poisson", "ttft_ms_p90"), "change-point", "vllm==0.32.0", "vllm==0.33.0", 0.1, None,
           None, 0.004, True),  # fmt: skip
)
FINDING = Finding(12, "vllm", "h100-80gb", "advisor", "vllm==0.32.0", "vllm==0.33.0", 0.12, 0.09, 0.15, 2e-5, True,
                  "open", None, None, "2026-11-20T10:00:00.000Z", "2026-11-26T10:00:00.000Z", MEMBERS)  # fmt: skip
CONFIRMATION = Confirmation(12, 4, "2026-11-26T11:00:00.000Z", "confirmed", "llama-8b · chat · r=8.0/s poisson · ttft_ms_p50",
                            "FAIL", 0.114, 0.08, 0.15, 0.031, "2 of 3 member series regressed in the A/B session")  # fmt: skip
CULPRIT = Bisect(3, "done", "culprit", "vllm", "h100-80gb", "advisor", "chat", "r=8.0/s poisson", "ttft_ms_p50",
                 "vllm==0.32.0", "vllm==0.33.0", "vllm@abc123def4567890", "[Core] Reorder the scheduler | @alice's *fast* path",
                 "https://github.com/vllm-project/vllm/commit/abc123def4567890", 0.97, 0.118, 24, 12,
                 "2026-11-26T12:00:00.000Z", None)  # fmt: skip
RUNNING = replace(CULPRIT, id=4, status="running", outcome=None, culprit=None, culprit_subject=None, culprit_url=None,
                  confidence=None, rel_change=None, trials=6)  # fmt: skip
AMBIGUOUS = replace(CULPRIT, id=5, outcome="ambiguous", culprit="vllm@fedcba9876543210", culprit_url=None,
                    culprit_subject=None, confidence=0.55)  # fmt: skip
NOT_REPRODUCED = replace(CULPRIT, id=6, outcome="cannot-reproduce", culprit=None, culprit_url=None,
                         culprit_subject=None, confidence=None, rel_change=None, error=None)  # fmt: skip
SUMMARY = Summary("vllm==0.33.0 vs vllm==0.32.0", (Section(CANDIDATE, BASELINE, VERDICTS),), (FINDING,), (CULPRIT,))


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PERFCI_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with PERFCI_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text()


def test_summary_covers_every_verdict_startup_findings_bisect_and_links():
    text = markdown.summary(SUMMARY, DASHBOARD)
    check_golden("summary.md", text)
    for verdict in ("regression", "improvement", "unchanged", "inconclusive", "no baseline", "failed"):
        assert f"{markdown.ICONS[verdict.replace(' ', '-')]} {verdict}" in text
    assert text.startswith(markdown.SUMMARY_MARKER)
    assert "https://perf.example.org/site/runs/9a8b7c6d-0000-4000-8000-000000000002.html" in text
    assert "https://perf.example.org/site/startup.html?engine=vllm&hardware=h100-80gb" in text
    assert "trends.html?engine=vllm&model=llama-8b&hardware=h100-80gb&suite=advisor&workload=chat" in text
    assert "(https://github.com/vllm-project/vllm/commit/abc123def4567890)" in text  # the bisect links its culprit
    assert "bisects/" not in text


def test_summary_without_a_dashboard_has_no_links_and_no_marker():
    text = markdown.summary(SUMMARY, Dashboard(None), marker=None)
    check_golden("summary-no-dashboard.md", text)
    assert "http" not in text.replace("https://github.com/vllm-project/vllm/commit/abc123def4567890", "")


def test_summary_of_several_runs_some_without_a_baseline():
    first = Section(Selection("run 9a8b7c6d (vllm==0.33.0)", "vllm==0.33.0", CANDIDATE.run_ids[:1]), BASELINE,
                    VERDICTS[:4])  # fmt: skip
    unjudged = Section(Selection("run 1f2e3d4c (vllm==0.33.0)", "vllm==0.33.0", ("1f2e3d4c-0000",)), None,
                       (replace(VERDICTS[0], key=key("chat", "c=1", "ttft_ms_p50", hardware="l40s"), verdict="no-baseline",
                                baseline=None, rel_change=None, ci_low=None, ci_high=None, pvalue=None),))  # fmt: skip
    check_golden("summary-runs.md", markdown.summary(Summary("2 runs judged", (first, unjudged), (), ()), DASHBOARD))


def test_a_series_that_can_never_be_decided_says_how_many_values_it_needs():
    one_run = replace(VERDICTS[3], n_baseline=5, n_candidate=1, needed=5)
    section = Section(CANDIDATE, BASELINE, (one_run,))
    text = markdown.summary(Summary("one run", (section,), (), ()), Dashboard(None), marker=None)
    assert f"{markdown.ICONS['inconclusive']} inconclusive (cannot decide: 1 value; need ≥ 5)" in text


def test_a_summary_too_large_for_a_comment_is_summarised_with_whole_tables():
    many = tuple(SeriesVerdict(key(f"workload-{i:04d}", "c=8", metric), verdict, 10.0, 11.0, 0.1, 0.05, 0.15, 0.001, 5, 5)
                 for i in range(1500) for metric, verdict in (("ttft_ms_p50", "regression"), ("tpot_ms_p50", "unchanged"),
                                                              ("itl_ms_p99", "inconclusive")))  # fmt: skip
    big = Summary("huge", (Section(CANDIDATE, BASELINE, many),), (FINDING,), (CULPRIT,))
    comment = markdown.summary(big, DASHBOARD)
    assert markdown.fits_comment(comment)
    assert "10 more series that regressed" not in comment and "more series that regressed, improved or failed are left out" in comment
    _assert_tables_whole(comment)
    step = markdown.summary(big, DASHBOARD, fits=markdown.fits_step_summary)
    assert markdown.fits_step_summary(step) and "<details>" in step and len(step) > len(comment)  # more room: more said
    _assert_tables_whole(step)
    assert markdown.summary(big, DASHBOARD, fits=lambda text: len(text) < 3000).count("\n| ") == 0  # counts only
    check_golden("summary-summarised.md", markdown.summary(SUMMARY, DASHBOARD, fits=lambda text: len(text) < 3000))


def _assert_tables_whole(text: str) -> None:
    """Every table: a header, its separator, and rows with as many cells as the header."""
    for table in re.findall(r"(?:^\|.*\|\n)+", text, flags=re.M):
        lines = table.splitlines()
        assert re.fullmatch(r"(\|---)+\|", lines[1]), lines[:2]
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in lines}
        assert len(widths) == 1, table[:300]


def test_issue_body_title_and_comments():
    check_golden("issue.md", markdown.issue(replace(FINDING, ab=CONFIRMATION), [CULPRIT, RUNNING], DASHBOARD))
    assert markdown.issue_title(FINDING, CULPRIT) == ("vllm==0.33.0 made TTFT p50 12.0% worse on h100-80gb at "
                                                      "r=8.0/s poisson (advisor); bisected to vllm@abc123def4567890 "
                                                      "(confidence 97%)")  # fmt: skip
    assert markdown.issue_title(FINDING, None).endswith("(advisor)")
    fixed = replace(FINDING, status="fixed", fixed_in="vllm==0.33.1", why="values returned in vllm==0.33.1 (perfci detect)")
    check_golden("issue-fixed.md", markdown.issue(fixed, [], Dashboard(None)) + "\n" + markdown.closing_comment(fixed))
    dismissed = replace(FINDING, status="false-positive", why="noisy neighbour on the runner")
    assert "Marked **false-positive**: noisy neighbour on the runner. Closing." in markdown.closing_comment(dismissed)
    check_golden("bisects.md", "\n".join(markdown.bisect_comment(b) for b in (CULPRIT, AMBIGUOUS, NOT_REPRODUCED)))


def test_markers_survive_untrusted_text_and_untrusted_text_stays_inert():
    odd = replace(FINDING, hardware_label="gpu/odd -->", first_bad="vllm==1.0 --> <b>")
    marker = markdown.finding_marker(odd)
    assert marker.count("-->") == 1 and marker.endswith(" -->") and markdown.FINDING_MARKER.fullmatch(marker)
    assert markdown.md("| *x* <img src=y> @alice [a](b)") == "\\| \\*x\\* &lt;img src=y&gt; @\u200balice \\[a\\](b)"
    assert markdown.md("vllm@abc123") == "vllm@abc123"  # not a mention: left readable
    assert markdown.md("two\nlines") == "two lines"
    assert markdown.url("https://github.com/o/r/commit/abc") == "https://github.com/o/r/commit/abc"
    assert markdown.url("https://x.org/a b)c") == "https://x.org/a%20b%29c"
    assert markdown.url("javascript:alert(1)") == ""


@pytest.mark.parametrize(("metric", "value", "text"), [("ttft_ms_p50", 1234.56, "1,234.6 ms"),
                         ("startup.total", 95.0, "95.00 s"), ("output_throughput", 2310.5, "2,310.5 tok/s"),
                         ("request_rate", 8.0, "8.00 req/s"), ("error_rate", 0.25, "25.0%")])  # fmt: skip
def test_values_carry_their_units(metric, value, text):
    assert metrics.format_value(metric, value) == text


def _ab_session(verdicts, *, verdict="FAIL", reason="1 of 4 series regressed"):
    from perfci.verdicts import ab, abstats

    return ab.Session(id=7, baseline="vllm==0.32.0", candidate="vllm@git:https://github.com/o/vllm#abc123",
                      baseline_build="vllm==0.32.0", candidate_build="vllm@abc123def456", suite="smoke",
                      hardware_label="h100-80gb", blocks=[{"block": i, "arm": a, "run_id": f"r{i}", "status": "ok"}
                                                         for i, a in enumerate("ABBAABBA")],
                      judgement=abstats.Judgement(verdict, reason, tuple(verdicts)),
                      notes=["block 6 (candidate) degraded: 1 of 4 points not ok"])  # fmt: skip


AB_SERIES = (
    ("tiny-llama · short · c=4 · itl_ms_p50", "itl_ms_p50", "FAIL", 0.081, 0.05, 0.113, 0.031, 0.001, "+8.1% (adjusted p = 0.001)"),
    ("tiny-llama · short · c=4 · output_throughput", "output_throughput", "PASS", -0.004, -0.012, 0.004, 0.011, 0.8, "no regression"),
    ("tiny-llama · short · sync · ttft_ms_p99", "ttft_ms_p99", "INCONCLUSIVE", 0.03, -0.06, 0.13, 0.16, 0.9,
     "machine unstable: the baseline's halves differ by +9.0%, as much as the change (+3.0%)"),
    ("tiny-llama · (startup) · warm · startup.total", "startup.total", "IMPROVED", -0.2, -0.25, -0.15, 0.05, 0.002, "-20.0% | *x*"),
)  # fmt: skip


def test_ab_summary_lists_every_series_worst_first_and_shrinks_to_fit():
    from perfci.verdicts.abstats import SeriesVerdict

    verdicts = [SeriesVerdict(name, metric, v, change, low, high, mde, p, p, 0.01, 4, 4, reason)
                for name, metric, v, change, low, high, mde, p, reason in AB_SERIES]  # fmt: skip
    session = _ab_session(verdicts)
    text = markdown.ab_summary(session)
    check_golden("ab.md", text)
    assert text.index("🔴 FAIL |") < text.index("🟡 INCONCLUSIVE |") < text.index("🟢 IMPROVED |") < text.index("✅ PASS |")
    shorter = markdown.ab_summary(session, fits=lambda t: len(t) < len(text) - 10)
    assert "✅ PASS |" not in shorter and "1 more series (all PASS) left out" in shorter
    assert "| series |" not in markdown.ab_summary(session, fits=lambda t: len(t) < 1000)


SILENT = (
    Silence("sglang", "h100", "2026-11-20T06:00:00.000Z", None, ("sglang==0.5.23|h100|smoke",)),
    Silence("vllm", "b200", "2026-11-21T10:00:00.000Z", "2026-11-21T10:00:00.000Z",
            tuple(f"vllm==0.33.{i}|b200|smoke" for i in range(5))),  # fmt: skip
)


def test_missing_data_issue_names_each_silent_series_since_when_and_the_jobs_waiting():
    title = markdown.silence_title(list(SILENT))
    assert title == "No benchmark data from sglang on h100, vllm on b200 since 2026-11-20"
    text = markdown.silence_issue(list(SILENT), silent_after_hours=48)
    closing = markdown.silence_closing_comment("2026-11-23T06:00:00.000Z")
    back = markdown.silence_issue([], silent_after_hours=48)
    check_golden("silence.md", "\n".join((title, "", text, back, closing)))
