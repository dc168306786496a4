"""A store filled by real `perfci run --engine sim` processes, a finding from `perfci detect`, and the site that
`perfci dashboard` builds from it; headless Chromium (Debian's `chromium`, driven by playwright) to open it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

SUITE = """
name = "dash"
[[models]]
name = "tiny"
[[workloads]]
name = "chat"
prompt_tokens = 16
output_tokens = 8
load = { synchronous = true, concurrency = [2, 4] }
[run]
requests = 6
warmup_requests = 1
[startup]
caches = ["cold", "warm"]
[slo]
ttft_ms = 30
tpot_ms = 20
[sim]
startup_s = 0.1
"""
# Decode time per token of each real run: two fast, two 3x slower (far beyond the noise of a busy machine). Each record is stored under two fake
# versions (a new run id each), so the series has 8 builds, 0.1.0-0.8.0, and a slowdown from 0.5.0 on.
DECODE_MS = (2, 2, 6, 6)
CHROMIUM = os.environ.get("PERFCI_CHROMIUM", "/usr/bin/chromium")


def perfci(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfci", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.fixture(scope="session")
def sim_store(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dashboard")
    (d / "dash.toml").write_text(SUITE)
    procs = [
        subprocess.Popen([sys.executable, "-m", "perfci", "run", "--suite", "dash.toml", "--engine", "sim",
                          "--sim", f"decode_ms_per_token={ms}", "--sim", f"seed={i}", "--db", f"scratch{i}.db",
                          "--out", f"real/{i}.json"], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i, ms in enumerate(DECODE_MS)
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    (d / "records").mkdir()
    for i in range(len(DECODE_MS)):
        record = json.loads((d / f"real/{i}.json").read_text())
        for copy in range(2):
            build = 2 * i + copy + 1
            created = f"2026-11-{build:02d}T12:00:00.000Z"  # builds released a day apart
            record |= {"run_id": str(uuid.uuid4()), "created": created}
            record["build"] = record["build"] | {"version": f"0.{build}.0"}
            (d / f"records/{build}.json").write_text(json.dumps(record))
    ingested = perfci("ingest", *sorted(str(p) for p in (d / "records").glob("*.json")), "--db", "perfci.db", cwd=d)
    assert ingested.returncode == 0, ingested.stderr
    detected = perfci("detect", "--db", "perfci.db", cwd=d)
    assert detected.returncode in (0, 1), detected.stderr  # 1: a confirmed regression is open, as meant
    return d / "perfci.db"


@pytest.fixture(scope="session")
def site(sim_store) -> Path:
    out = sim_store.parent / "site"
    built = perfci("dashboard", "--db", str(sim_store), "--out", str(out), "--json", cwd=sim_store.parent)
    assert built.returncode == 0, built.stderr
    return out


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = Path(os.environ.get("PERFCI_ARTIFACTS", Path(__file__).parents[1] / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")  # not session: playwright's sync API holds an event loop open in this thread,
def browser():  # and tests run after it that call asyncio.run() would fail
    from playwright.sync_api import sync_playwright  # the `dev` extra; `make test` installs it

    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium (or set PERFCI_CHROMIUM)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()
