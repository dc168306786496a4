"""perfci as users get it: the wheel built from this checkout, installed (not editable) into a fresh venv by
runners/install-perfci.sh (what the setup-perfci action and the runner setup run), then driven from an empty
directory with no checkout on sys.path. Everything perfci reads at run time must have come with the wheel."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("suites", "dashboards")  # top-level folders of the repository that the wheel carries inside perfci/
FAST = ["--sim", "startup_s=0.1", "--sim", "decode_ms_per_token=1"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, environment) with the wheel installed; the environment has no PYTHONPATH."""
    base = tmp_path_factory.mktemp("wheel")
    venv = base / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.pop("GITHUB_STEP_SUMMARY", None)  # `report --summary --dry-run` must not find one to write to
    done = subprocess.run([str(ROOT / "runners/install-perfci.sh"), str(venv)], cwd=base, capture_output=True,
                          text=True, timeout=240, env={**env, "PYTHON": sys.executable})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    env["PERFCI_CACHE"] = str(base / "cache")
    env["COLUMNS"] = "400"  # rich wraps messages at the terminal's width; keep each on one line
    return venv, env


@pytest.fixture(scope="module")
def session(installed, tmp_path_factory):
    """An empty directory, and the installed perfci's commands run there in the order a workflow runs them."""
    venv, env = installed
    work = tmp_path_factory.mktemp("empty")

    def perfci(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin/perfci"), *args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=240)  # fmt: skip

    done = {
        "run": perfci("run", "--suite", "smoke", "--engine", "sim", *FAST),
        "detect": perfci("detect", "--json"),
        "dashboard": perfci("dashboard"),
        "report": perfci("report", "--dry-run", "--summary"),
        "missing suite": perfci("run", "--suite", "no-such-suite", "--engine", "sim"),
    }
    return work, done


def site_packages(venv: Path) -> Path:
    (path,) = venv.glob("lib/python3.*/site-packages")
    return path


def test_the_installed_perfci_is_the_venvs_not_the_checkouts(installed, tmp_path):
    venv, env = installed
    done = subprocess.run([str(venv / "bin/python"), "-c", "import perfci, sys; print(perfci.__file__); print(sys.path)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    where, path = done.stdout.splitlines()
    assert Path(where).is_relative_to(site_packages(venv))
    assert str(ROOT) not in path
    assert not (site_packages(venv) / "_editable_impl_perfci.pth").exists()


def test_the_wheel_carries_every_suite_and_dashboard_file(installed):
    venv, _ = installed
    package = site_packages(venv) / "perfci"
    for folder in SHIPPED:
        ours = {p.relative_to(ROOT): p.read_bytes() for p in (ROOT / folder).rglob("*") if p.is_file()}
        theirs = {p.relative_to(package): p.read_bytes() for p in (package / folder).rglob("*") if p.is_file()}
        assert ours and theirs == ours, folder
    templates = {p.name for p in (package / "report/templates").iterdir()}
    assert templates == {p.name for p in (ROOT / "perfci/report/templates").glob("*.md.j2")}


def test_run_smoke_on_sim_from_an_empty_directory(session, installed):
    work, done = session
    run = done["run"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SIMULATOR" in run.stdout and "status ok" in run.stdout
    (record_path,) = (work / "runs").glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "ok" and len(record["points"]) == 4
    # The shipped suite was read from the installed package, and is recorded by name and hash, not by where
    # perfci happens to be installed.
    installed_suite = site_packages(installed[0]) / "perfci/suites/smoke.toml"
    assert record["suite"]["path"] is None
    assert record["suite"]["hash"] == hashlib.sha256(installed_suite.read_bytes()).hexdigest()[:16]
    assert (work / "perfci.db").is_file()


def test_an_unknown_suite_names_the_shipped_ones(session):
    _, done = session
    missing = done["missing suite"]
    assert missing.returncode == 2
    assert "no-such-suite.toml: cannot read suite" in missing.stderr
    shipped = ", ".join(sorted(p.stem for p in (ROOT / "suites").glob("*.toml")))
    assert f"shipped suites: {shipped}" in missing.stderr  # every suite of the source tree is in the wheel


def test_detect_judges_the_run(session):
    _, done = session
    assert done["detect"].returncode == 0, done["detect"].stderr
    (judged,) = json.loads(done["detect"].stdout)["judged"]
    assert judged["verdict"] == "no-baseline"


def test_dashboard_builds_the_site_with_its_assets_and_cost_table(session):
    work, done = session
    assert done["dashboard"].returncode == 0, done["dashboard"].stderr
    site = work / "site"
    for page in ("index.html", "trends.html", "load.html", "engines.html", "startup.html", "cost.html"):
        assert (site / page).is_file(), page
    assert (site / "assets/app.js").read_bytes() == (ROOT / "dashboards/static/app.js").read_bytes()
    assert (site / "assets/vendor/uplot/uPlot.iife.min.js").is_file()
    assert "cpu-* $0.10" in (site / "cost.html").read_text()  # the shipped dashboards/costs.toml


def test_report_dry_run_renders_the_summary_and_writes_nothing(session):
    work, done = session
    report = done["report"]
    assert report.returncode == 0, report.stderr
    assert "--- would append to $GITHUB_STEP_SUMMARY" in report.stdout
    assert "## perfci: run" in report.stdout and "suite **smoke**" in report.stdout
    assert sorted(p.name for p in work.iterdir()) == ["perfci.db", "runs", "site"]
