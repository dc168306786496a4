"""Golden markdown: the summary (every verdict, startup cold and warm, findings, bisects, links), issue bodies,
bisect and closing comments. PERFCI_UPDATE_GOLDEN=1 rewrites tests/report/golden/ instead of comparing; review
the diff before keeping it."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from perfci.findings import Finding, Member, SeriesVerdict
from perfci.report import markdown
from perfci.report.markdown import Dashboard
from perfci.report.summary import Bisect, Section, Summary
from perfci.series import STARTUP_WORKLOAD, Selection, SeriesKey

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
    check_golden("issue.md", markdown.issue(FINDING, [CULPRIT, RUNNING], DASHBOARD))
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
    assert markdown.value(metric, value) == text
