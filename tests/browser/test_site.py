"""The built site in headless Chromium, opened from disk with every other request aborted: no console errors, every
chart draws marks, filters change the chart and the URL, deep links restore the filters. Screenshots of each page
go to the artifacts folder ($PERFCI_ARTIFACTS, else tests/artifacts)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from perfci.report import dashboard
from perfci.store import open_db

# Non-white pixels of a chart's canvas and a digest of them: a chart "has marks" when uPlot counted values and the
# canvas holds ink beyond the axes; the digest tells whether a filter redrew something different.
INK = """box => {
  const c = box.querySelector('canvas');
  if (!c) return {ink: 0, digest: 0};
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let ink = 0, digest = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200) { ink++; digest = (digest * 31 + i + d[i] + 7 * d[i + 2]) % 1000000007; }
  }
  return {ink, digest, marks: Number(box.dataset.marks || 0)};
}"""


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requested: list[str] = []

    def only_local(route):
        url = route.request.url
        if url.startswith("file://"):
            route.continue_()
        else:
            requested.append(url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    yield page
    context.close()
    assert not problems, problems
    assert not requested, f"the site asked the network for {requested}"


def open_page(page, site, name: str, query: str = ""):
    page.goto((site / name).as_uri() + (f"?{query}" if query else ""))
    page.wait_for_load_state("load")


def chart(page, selector: str) -> dict:
    page.wait_for_selector(f"{selector} canvas")
    return page.eval_on_selector(selector, INK)


def shot(page, artifacts, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
    assert (artifacts / f"{name}.png").stat().st_size > 10_000


def test_overview(page, site, artifacts):
    open_page(page, site, "index.html")
    cell = page.locator("#matrix td.verdict").first
    assert cell.locator(".badge").inner_text() in ("regression", "inconclusive", "unchanged", "improvement")
    assert page.locator("#regressions tbody tr").count() >= 1  # perfci detect's finding at sim==0.5.0
    assert "sim==0.4.0 → sim==0.5.0" in page.locator("#regressions").inner_text()
    shot(page, artifacts, "overview")


def test_trends_marks_change_point_and_follows_filters(page, site, artifacts):
    open_page(page, site, "trends.html", "engine=sim&suite=dash&model=tiny&workload=chat&load=sync&metric=tpot_ms_p50")
    assert page.locator("select[name=load]").input_value() == "sync"  # the deep link restored the filters
    assert page.locator("select[name=stat]").input_value() == "p50"
    before = chart(page, "#chart")
    assert before["marks"] == 8 and before["ink"] > 2000  # one value per build, 0.1.0 … 0.8.0
    marks = page.locator("#marks").inner_text()
    assert "change point at sim==0.5.0 (sync)" in marks and "regression" in marks, marks
    assert "finding (change-point, open) first bad sim==0.5.0" in marks, marks
    shot(page, artifacts, "trends")

    page.select_option("select[name=load]", "")  # every load level: three lines
    after = chart(page, "#chart")
    assert after["marks"] == 24 and after["digest"] != before["digest"], (before, after)
    page.select_option("select[name=stat]", "p99")
    assert chart(page, "#chart")["digest"] != after["digest"]
    query = parse_qs(urlparse(page.url).query)
    assert query["metric"] == ["tpot_ms_p99"] and "load" not in query


def test_trends_of_startup_phases(page, site, artifacts):
    open_page(page, site, "trends.html", "engine=sim&workload=%28startup%29&metric=startup.total")
    assert page.locator("select[name=base]").input_value() == "startup.total"
    assert chart(page, "#chart")["marks"] == 16  # cold and warm, 8 builds
    shot(page, artifacts, "trends-startup")


def test_latency_vs_load(page, site, artifacts):
    open_page(page, site, "load.html", "metric=ttft_ms_p99")
    boxes = page.locator("#builds input")
    assert boxes.count() == 8
    assert [b.get_attribute("value") for b in page.locator("#builds input:checked").all()] == ["sim==0.7.0", "sim==0.8.0"]
    before = chart(page, "#chart")
    assert before["marks"] == 6 and before["ink"] > 2000  # two builds, three load levels
    shot(page, artifacts, "latency-vs-load")
    page.locator("#builds input[value='sim==0.1.0']").check()
    after = chart(page, "#chart")
    assert after["marks"] == 9 and after["digest"] != before["digest"]
    assert "sim%3D%3D0.1.0" in page.url or "sim==0.1.0" in page.url
    page.select_option("select[name=metric]", "e2e_ms")
    assert chart(page, "#chart")["digest"] != after["digest"]


def test_engine_vs_engine(page, site, artifacts):
    open_page(page, site, "engines.html", "metric=tpot_ms_p50")
    before = chart(page, "#chart")
    assert before["marks"] == 3  # one dot per load level
    shot(page, artifacts, "engine-vs-engine")
    page.select_option("select[name=metric]", "request_rate")
    assert chart(page, "#chart")["digest"] != before["digest"]


def test_startup_stacks(page, site, artifacts):
    open_page(page, site, "startup.html", "engine=sim")
    page.wait_for_selector(".startup-chart canvas")
    caches = [c.get_attribute("data-cache") for c in page.locator(".startup-chart").all()]
    assert caches == ["cold", "warm"]
    for cache in caches:
        drawn = chart(page, f".startup-chart[data-cache={cache}]")
        assert drawn["marks"] > 0 and drawn["ink"] > 2000
    shot(page, artifacts, "startup")


def test_cost_and_run_pages(page, site, artifacts):
    open_page(page, site, "cost.html")
    assert chart(page, "#chart")["marks"] == 3  # the newest three builds
    assert page.locator("#costs tbody tr").count() == 3
    assert "sim==0.8.0" in page.locator("#costs").inner_text()
    shot(page, artifacts, "cost")
    open_page(page, site, "index.html")
    page.locator("#matrix td.verdict a[href^='runs/']").first.click()
    page.wait_for_load_state("load")
    assert page.locator("#points tbody tr").count() == 3
    assert "perfci.measure.simulator" in page.locator("#argv").inner_text()
    download = page.locator("a[download]").get_attribute("href")
    assert (site / "runs" / download).is_file()
    shot(page, artifacts, "run")


def test_an_empty_store_gives_pages_that_say_so(page, tmp_path):
    empty = dashboard.build_site(open_db(tmp_path / "empty.db"), tmp_path / "site", costs=dashboard.load_costs())
    for name in ("index.html", "trends.html", "load.html", "engines.html", "startup.html", "cost.html"):
        open_page(page, empty.out, name)
        assert page.locator("h1").count() == 1
    open_page(page, empty.out, "trends.html")
    assert page.locator("#empty").is_visible()
