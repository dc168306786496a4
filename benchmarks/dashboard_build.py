"""How long does `perfci dashboard` take on a big store, how heavy are its pages, and how fast do they draw?

A store is synthesised with real ingest (RunRecords, perfci.store.ingest): ENGINES × HARDWARE × BUILDS runs, each
with WORKLOADS × LOADS × REPEATS points (defaults: 2 × 2 × 250 runs of 5 × 5 × 4 points = 100,000 points), every
series with noise and a 30% slowdown at the middle build, and two starts (cold, warm) per run. Then
`dashboard.build_site` is timed (in this process: the figure excludes the interpreter's start), and each page's
weight is what a browser downloads to show it: the HTML, the shared assets and, for Trends, one data shard. With
--browser, headless Chromium (Debian's, via playwright) opens each page from disk and the time from navigation
to drawn charts is reported.

    .venv/bin/python benchmarks/dashboard_build.py               # ~2-4 minutes on 2 cores
    .venv/bin/python benchmarks/dashboard_build.py --builds 25   # 10,000 points
    .venv/bin/python benchmarks/dashboard_build.py --browser
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from perfci import store
from perfci.report import dashboard
from perfci.store.records import SCHEMA_VERSION, RunRecord

ENGINES = ("vllm", "sglang")
HARDWARE = ("h100", "h200")
WORKLOADS = ("chat", "summarize", "rag", "code", "long-gen")
LOADS = (1, 4, 16, 32, 64)
REPEATS = 4
STATS = {"mean": 1.0, "std": 0.1, "p50": 0.95, "p90": 1.2, "p95": 1.3, "p99": 1.5, "max": 2.0}
BASE_MS = {"ttft_ms": 40.0, "tpot_ms": 8.0, "itl_ms": 8.0, "e2e_ms": 300.0}


def record(engine: str, hardware: str, build: int, builds: int, rng: np.random.Generator) -> RunRecord:
    slow = 1.3 if build >= builds // 2 else 1.0
    points = []
    for w, workload in enumerate(WORKLOADS):
        for load in LOADS:
            for repeat in range(REPEATS):
                f = slow * (1 + 0.02 * rng.standard_normal()) * (1 + 0.03 * load) * (1 + 0.2 * w)
                rate = load / (BASE_MS["e2e_ms"] * f / 1000)
                metrics = {
                    "requests": 200, "completed": 200, "errors": 0, "error_rate": 0.0, "duration_s": 60.0,
                    "request_rate": rate, "output_throughput": rate * 128, "total_throughput": rate * 640,
                    "goodput": rate if f < 2.5 else rate / 2, "slo_met": f < 2.5, "prompt_tokens_mean": 512.0,
                    "output_tokens_mean": 128.0,
                    **{m: {s: base * f * k for s, k in STATS.items()} for m, base in BASE_MS.items()},
                }  # fmt: skip
                points.append({
                    "index": len(points), "model": "llama-3.1-8b", "workload": workload,
                    "load": {"kind": "concurrency", "value": float(load), "arrival": None, "burstiness": None,
                             "max_concurrency": load},
                    "load_label": f"c={load}", "repeat": repeat, "status": "ok", "error": None,
                    "started": "2026-11-01T00:00:00.000Z", "metrics": metrics,
                    "telemetry": {"gpu_util_percent_mean": 90.0},
                    "requests": {k: [] for k in ("send_ms", "ttft_ms", "e2e_ms", "prompt_tokens", "output_tokens",
                                                 "status", "error", "error_kind", "itl_ms")},
                })  # fmt: skip
    starts = [{"model": "llama-3.1-8b", "cache": cache, "ready": True, "lines": [], "error": None,
               "total_s": 60.0 * k * slow,
               "phases": {"model_loading": 20.0 * k, "init_engine": 25.0 * k * slow, "unreported": 15.0 * k,
                          "first_token": 0.2}}
              for cache, k in (("cold", 1.0), ("warm", 0.6))]  # fmt: skip
    return RunRecord.model_validate({
        "schema_version": SCHEMA_VERSION, "kind": "perfci-run",
        "run_id": str(uuid.UUID(bytes=rng.bytes(16), version=4)),
        "created": f"2026-{1 + build * 11 // builds:02d}-{1 + build % 28:02d}T00:00:{build % 60:02d}.000Z",
        "perfci_version": "0.1.0",
        "suite": {"name": "advisor", "hash": "0123456789abcdef", "path": "suites/advisor.toml"},
        "build": {"engine": engine, "version": f"0.{build}.0", "commit": None, "source": f"pypi:{engine}==0.{build}.0",
                  "kernels": None},
        "hardware": {"label": hardware, "fingerprint": {"gpus": [{"name": f"NVIDIA {hardware.upper()}"}]}},
        "engine_argv": [engine, "serve", "llama-3.1-8b"], "environment": {}, "status": "ok", "error": None,
        "startups": starts, "points": points, "log_tail": "INFO ready\n",
    })  # fmt: skip


def synthesise(db_path: Path, builds: int) -> int:
    db = store.open_db(db_path)
    rng = np.random.default_rng(1)
    n = 0
    for engine in ENGINES:
        for hardware in HARDWARE:
            for build in range(builds):
                r = record(engine, hardware, build, builds, rng)
                store.ingest(db, r)
                n += len(r.points)
    db.close()
    return n


def weights(site: Path) -> dict[str, int]:
    """Bytes a browser fetches to show each page: the HTML, the shared assets, and Trends' first shard."""
    assets = sum(p.stat().st_size for p in (site / "assets").rglob("*") if p.suffix in (".js", ".css"))
    pages = {name: (site / name).stat().st_size + assets for name in
             ("index.html", "trends.html", "load.html", "engines.html", "startup.html", "cost.html")}  # fmt: skip
    shard = max((site / "data/trends/0").glob("*.js"), key=lambda p: p.stat().st_size)
    pages["trends.html"] += shard.stat().st_size
    run_page = next((site / "runs").glob("*.html"))
    pages["runs/<id>.html"] = run_page.stat().st_size + assets
    return pages


def browser_times(site: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
        for name, ready in (("index.html", "#matrix"), ("trends.html", "#chart canvas"), ("load.html", "#chart canvas"),
                            ("engines.html", "#chart canvas"), ("startup.html", ".startup-chart canvas"),
                            ("cost.html", "#chart canvas")):  # fmt: skip
            start = time.perf_counter()
            page.goto((site / name).as_uri())
            page.wait_for_selector(ready)
            out[name] = time.perf_counter() - start
        browser.close()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--builds", type=int, default=250, help="builds per engine and hardware label")
    ap.add_argument("--browser", action="store_true", help="also time each page in headless Chromium")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        points = synthesise(tmp / "big.db", args.builds)
        print(f"store: {points:,} points, {len(ENGINES) * len(HARDWARE) * args.builds:,} runs "
              f"(synthesised in {time.perf_counter() - start:.1f} s)")  # fmt: skip
        db = store.open_db(tmp / "big.db")
        start = time.perf_counter()
        report = dashboard.build_site(db, tmp / "site", costs=dashboard.load_costs())
        built = time.perf_counter() - start
        print(f"build: {built:.1f} s; {report.summary()}")
        print("| page | bytes a browser fetches |\n|---|---|")
        for name, size in weights(tmp / "site").items():
            print(f"| {name} | {size / 1e3:,.0f} kB |")
        if args.browser:
            print("| page | navigation to drawn charts |\n|---|---|")
            for name, seconds in browser_times(tmp / "site").items():
                print(f"| {name} | {seconds:.2f} s |")


if __name__ == "__main__":
    sys.exit(main())
