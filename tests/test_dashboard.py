"""`perfci dashboard` and perfci.report.dashboard over real SQLite stores of synthesised records: page data, escaping of
untrusted text, the cost table, replacing a site, serving it over HTTP. tests/browser/ opens the site in Chromium."""

from __future__ import annotations

import copy
import json
import re
import threading
import urllib.request

import pytest
from click.testing import CliRunner

from perfci.cli.main import cli
from perfci.errors import ConfigError
from perfci.report import dashboard
from perfci.store import ingest
from perfci.store.records import RunRecord
from perfci.verdicts import findings

HOSTILE = '</script><script>alert("x")</script><img src=x onerror=alert(1)>'
PAGE_DATA = re.compile(r'<script type="application/json" id="page-data">(.*?)</script>', re.S)


@pytest.fixture
def add_run(tmp_db, make_record_dict):
    """Ingest one run of `version` with every latency `factor` times the conftest record's."""
    day = iter(range(1, 29))

    def add(version, factor=1.0, **build):
        record = make_record_dict(created=f"2026-11-{next(day):02d}T12:00:00.000Z", status="ok")
        record["build"] = {"engine": "sim", "version": version, "commit": None, "source": "builtin"} | build
        ok = copy.deepcopy(record["points"][0])
        ok["metrics"] = {k: ({s: v * factor for s, v in m.items()} if isinstance(m, dict) else m)
                         for k, m in ok["metrics"].items()} | {"goodput": 2.0 / factor}  # fmt: skip
        record["points"] = [ok]
        ingest(tmp_db, RunRecord.model_validate(record))
        return record["run_id"]

    return add


def build(db, tmp_path, **kwargs):
    return dashboard.build_site(db, tmp_path / "site", costs=dashboard.load_costs(), **kwargs)


def page_data(path):
    return json.loads(PAGE_DATA.search(path.read_text()).group(1))


def shard_data(path):
    text = path.read_text()
    assert text.startswith("perfciShard(") and text.endswith(");\n")
    return json.loads(text[text.index(", ") + 2 : -3])


def test_trends_carry_change_points_findings_and_bisect_culprits(tmp_db, add_run, tmp_path):
    for i in range(10):
        add_run(f"0.{i}.0", factor=1.0 if i < 5 else 2.0)
    findings.detect_pass(tmp_db)
    tmp_db["bisects"].insert({"id": 1, "created": "t", "updated": "t", "status": "done", "outcome": "culprit",
                              "driver": "releases", "engine": "sim", "hardware_label": "cpu-2c", "suite": "smoke",
                              "workload": "short", "load_label": "c=4", "metric": "ttft_ms_p50", "good": "0.4.0",
                              "bad": "0.5.0", "culprit": "0.5.0", "culprit_subject": HOSTILE,
                              "culprit_url": "javascript:alert(1)", "trials": 4, "spec": "{}"})  # fmt: skip
    report = build(tmp_db, tmp_path)
    assert report.runs == 10 and report.pages == 7 + 10  # overview, trends, load, engines, startup, cost, A/B
    manifest = page_data(tmp_path / "site/trends.html")
    (scope,) = manifest["scopes"]
    assert (scope["engine"], scope["builds"]) == ("sim", 10)
    text = (tmp_path / f"site/data/trends/{scope['id']}/ttft_ms_p50.js").read_text()
    shard = shard_data(tmp_path / f"site/data/trends/{scope['id']}/ttft_ms_p50.js")
    (line,) = shard["series"]
    assert [b["label"] for b in shard["builds"]] == [f"sim==0.{i}.0" for i in range(10)]
    assert [(c["index"], c["verdict"]) for c in line["change_points"]] == [(5, "regression")]
    assert 5 in {m["index"] for m in line["findings"]}
    (culprit,) = line["culprits"]
    assert (culprit["index"], culprit["subject"]) == (5, HOSTILE)
    assert "</script>" not in text and "<img" not in text  # HTML-safe JSON: \u003c…


def test_untrusted_text_is_escaped_everywhere(tmp_db, add_run, tmp_path):
    run_id = add_run(HOSTILE)
    tmp_db.execute("UPDATE runs SET log_tail = ?, engine_argv = ?", [HOSTILE, json.dumps([HOSTILE])])
    tmp_db.execute("UPDATE points SET model = ?, workload = ?", [HOSTILE, HOSTILE])
    tmp_db.conn.commit()
    build(tmp_db, tmp_path)
    for page in (tmp_path / "site").rglob("*.html"):
        html = page.read_text()
        assert "<img" not in html and 'alert("x")</script>' not in html, page
    run_page = (tmp_path / f"site/runs/{run_id}.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in run_page  # shown, as text
    cells = page_data(tmp_path / "site/index.html")["rows"][0]["cells"]
    assert list(cells) == [HOSTILE]  # the JSON block decodes back to the exact text


def test_overview_startup_and_cost_data(tmp_db, add_run, tmp_path):
    add_run("0.1.0")
    newest = add_run("0.2.0", factor=1.5)
    findings.detect_pass(tmp_db)
    build(tmp_db, tmp_path)
    (row,) = page_data(tmp_path / "site/index.html")["rows"]
    cell = row["cells"]["tiny"]
    assert (cell["run_id"], cell["build"], cell["baseline"]) == (newest, "sim==0.2.0", "sim==0.1.0")
    assert cell["verdict"] in findings.VERDICTS
    (stack,) = page_data(tmp_path / "site/startup.html")["stacks"]
    # The conftest record's phases are not the sim adapter's: only the parts every engine has are stacked.
    assert stack["phases"] == [] and [c["cache"] for c in stack["caches"]] == ["cold", "warm"]
    rows = {r["build"]: r for r in page_data(tmp_path / "site/cost.html")["rows"]}
    # $0.10/h for cpu-* in dashboards/costs.toml, over 20 output tok/s (the record's) at the max-goodput level.
    assert rows["sim==0.1.0"]["usd_per_mtok"] == pytest.approx(0.10 / (20.0 * 3600) * 1e6)
    assert rows["sim==0.2.0"]["load"] == "c=4"
    (group,) = page_data(tmp_path / "site/load.html")["groups"]
    assert group["slo"]["ttft_ms"] == 2000  # suites/smoke.toml, the suite the records name
    assert [b["build"] for b in group["builds"]] == ["sim==0.1.0", "sim==0.2.0"]
    curves = shard_data(tmp_path / "site/data/load/0/ttft_ms_p99.js")
    assert [(c["loads"], c["max_goodput"]) for c in curves] == [(["c=4"], 0), (["c=4"], 0)]
    assert curves[1]["values"][0] == pytest.approx(1.5 * 12.75 * 1.5)  # factor x the record's p99


def test_startup_stacks_the_adapters_phases_in_order(tmp_db, make_record_dict, tmp_path):
    record = make_record_dict(status="ok")
    record["startups"][0]["phases"] = {"load_weights": 0.5, "compile": 1.0, "warmup": 0.2, "at_server_up": 2.0,
                                       "at_health_ok": 2.1, "unreported": 0.4, "first_token": 0.05}  # fmt: skip
    ingest(tmp_db, RunRecord.model_validate(record))
    build(tmp_db, tmp_path)
    (stack,) = page_data(tmp_path / "site/startup.html")["stacks"]
    assert stack["phases"] == ["load_weights", "compile", "warmup", "unreported", "first_token"]
    cold = stack["caches"][0]
    assert cold["cache"] == "cold" and cold["phases"]["compile"] == [1.0] and cold["builds"] == ["sim==0.1.0"]
    assert cold["meaning"].startswith("every engine cache for this build empty")


def test_rebuild_replaces_a_site_but_never_a_foreign_folder(tmp_db, add_run, tmp_path):
    add_run("0.1.0")
    build(tmp_db, tmp_path)
    first = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "site").rglob("*") if p.is_file()}
    (tmp_path / "site/stale.html").write_text("old")
    build(tmp_db, tmp_path)
    again = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "site").rglob("*") if p.is_file()}
    assert again == first  # no clock in the site: one store, one site
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["dashboard", "--db", str(tmp_path / "perfci.db"), "--out", str(foreign)])
    assert result.exit_code == 2 and "is not a site perfci built" in result.output
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind


def test_cost_table_is_validated(tmp_path):
    bad = tmp_path / "costs.toml"
    bad.write_text('[usd_per_gpu_hour]\n"h100*" = 2.5\n[extra]\nx = 1\n')
    with pytest.raises(ConfigError, match=r"costs.toml: invalid cost table\n  extra: unknown key"):
        dashboard.load_costs(bad)
    bad.write_text('[usd_per_gpu_hour]\n"h100*" = -1.0\n')
    with pytest.raises(ConfigError, match=r"usd_per_gpu_hour.h100\*: must be a positive price \(got -1.0\)"):
        dashboard.load_costs(bad)
    costs = dashboard.load_costs()
    assert costs.hourly("h100x8", 8) == pytest.approx(8 * costs.hourly("h100", 1))
    assert costs.hourly("tpu-v5", 4) is None


def test_cli_builds_and_serves_over_http(tmp_db, add_run, tmp_path):
    add_run("0.1.0")
    result = CliRunner().invoke(cli, ["dashboard", "--db", str(tmp_path / "perfci.db"), "--out",
                                      str(tmp_path / "site"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["pages"] == 8
    server = dashboard.serve(tmp_path / "site", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(f"{base}/trends.html?engine=sim&metric=ttft_ms_p50", timeout=10) as response:
            assert response.status == 200 and b'id="filters"' in response.read()
        with urllib.request.urlopen(f"{base}/assets/vendor/uplot/uPlot.iife.min.js", timeout=10) as response:
            assert b"uPlot" in response.read()
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(ConfigError, match="no index.html; build the site first"):
        dashboard.serve(tmp_path, port=0)
    missing = CliRunner().invoke(cli, ["dashboard", "--db", str(tmp_path / "nope.db"), "--out", str(tmp_path / "s")])
    assert missing.exit_code == 2 and "nope.db" in missing.output


def test_stand_in_kernels_are_shown_wherever_the_run_and_its_build_are(tmp_db, add_run, tmp_path):
    """A run whose engine used perfci's stand-in kernels says so on its page, in the newest runs, and beside its
    build on the engine-vs-engine and startup pages; a build with its own kernels carries no such note."""
    own = add_run("0.1.0")
    stood_in = add_run("0.2.0", kernels="perfci CPU stand-in for sgl_kernel")
    build(tmp_db, tmp_path)
    site = tmp_path / "site"
    assert "perfci CPU stand-in for sgl_kernel" in (site / "runs" / f"{stood_in}.html").read_text()
    assert 'id="kernels"' not in (site / "runs" / f"{own}.html").read_text()
    for page in ("engines.html", "startup.html"):
        text = (site / page).read_text()
        assert "sim==0.2.0</strong> — kernels: perfci CPU stand-in for sgl_kernel" in text and "sim==0.1.0</strong>" not in text
    newest = {r["run_id"]: r["kernels"] for r in page_data(site / "index.html")["newest_runs"]}
    assert newest == {own: None, stood_in: "perfci CPU stand-in for sgl_kernel"}


def test_compare_and_report_name_the_stand_in_kernels_of_a_side(tmp_db, add_run, tmp_path):
    tmp_db_path = tmp_path / "perfci.db"
    add_run("0.1.0")
    add_run("0.2.0", kernels="perfci CPU stand-in for sgl_kernel")
    compared = findings.compare_builds(tmp_db, "sim==0.1.0", "sim==0.2.0")
    assert (compared.baseline.kernels, compared.candidate.kernels) == (None, "perfci CPU stand-in for sgl_kernel")
    shown = CliRunner().invoke(cli, ["compare", "sim==0.1.0", "sim==0.2.0", "--db", str(tmp_db_path)])
    caption = " ".join(shown.output.split())  # the table's caption wraps
    assert shown.exit_code == 0 and "sim==0.2.0 ran with kernels: perfci CPU stand-in for sgl_kernel" in caption
    report = CliRunner().invoke(cli, ["report", "--baseline", "sim==0.1.0", "--candidate", "sim==0.2.0", "--db",
                                      str(tmp_db_path)])  # fmt: skip
    assert report.exit_code == 0, report.output
    text = report.output.replace("\\", "")  # markdown escapes of untrusted text (sgl\_kernel)
    assert "Kernels of sim==0.2.0: **perfci CPU stand-in for sgl_kernel**" in text and "Kernels of sim==0.1.0" not in text
