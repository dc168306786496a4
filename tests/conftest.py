"""Shared fixtures: a valid run record (as the JSON dict a runner writes) and a migrated store on disk; and the
test kinds. Every test is `unit` (in-process, fast: what `make check` runs) unless it is `integration` (it starts
perfci, an engine or a server as a process: the modules below, or a test marked so), `vllm` (a real vLLM),
`sglang` (a real SGLang) or `browser` (tests/browser/). `make test` runs them all."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import settings

from perfci.store import open_db
from perfci.store.records import SCHEMA_VERSION, new_run_id

# Test modules whose tests start processes: perfci commands, the sim engine, fake servers, git, uv, actionlint.
INTEGRATION_MODULES = {
    "test_ab", "test_backfill", "test_bisector", "test_cache_state", "test_cli", "test_cli_docs", "test_clocks", "test_confirm",
    "test_dashboard", "test_data", "test_envs", "test_examples", "test_exit_codes", "test_faults", "test_interrupt", "test_pipeline",
    "test_plan", "test_real_runs", "test_report", "test_repository", "test_runner", "test_runners", "test_server",
    "test_silence_report", "test_simulator", "test_store_safety", "test_watch", "test_workflow_replay",
    "test_workflows",
}  # fmt: skip
KINDS = ("integration", "vllm", "sglang", "browser")

# Hypothesis's per-example deadline is a timed assertion; on a shared 2-core machine it fails on load, not on bugs.
settings.register_profile("perfci", deadline=None)
settings.load_profile("perfci")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path))
        if "browser" in path.parts:
            item.add_marker(pytest.mark.browser)
        elif path.stem in INTEGRATION_MODULES:
            item.add_marker(pytest.mark.integration)
        if not any(item.get_closest_marker(kind) for kind in KINDS):
            item.add_marker(pytest.mark.unit)


def _stats(base: float) -> dict[str, float]:
    return {
        "mean": base,
        "std": base / 10,
        "p50": base,
        "p90": base * 1.2,
        "p95": base * 1.3,
        "p99": base * 1.5,
        "max": base * 2,
    }


_REQUESTS = {
    "send_ms": [0.0, 250.125, 500.5],
    "ttft_ms": [12.5, 13.0, None],
    "e2e_ms": [112.5, 90.0, None],
    "prompt_tokens": [32, 32, 32],
    "output_tokens": [11, 1, 0],
    "status": [200, 200, 500],
    "error": [None, None, "HTTP 500: injected"],
    "error_kind": [None, None, "http_5xx"],
    "itl_ms": [[10.0] * 10, [], []],
}

_RECORD = {
    "schema_version": SCHEMA_VERSION,
    "kind": "perfci-run",
    "run_id": "00000000-0000-4000-8000-000000000000",
    "created": "2026-11-26T23:40:00.123Z",
    "perfci_version": "0.1.0",
    "suite": {"name": "smoke", "hash": "0123456789abcdef", "path": "suites/smoke.toml"},
    "build": {"engine": "sim", "version": "0.1.0", "commit": None, "source": "builtin", "kernels": None},
    "hardware": {"label": "cpu-2c", "fingerprint": {"cpu": "test cpu", "cores": 2, "memory_gb": 8.0}},
    "engine_argv": ["python", "-m", "perfci.measure.engines.sim", "--port", "8000"],
    "environment": {"python": "3.11.9", "platform": "linux", "argv": ["perfci", "run"]},
    "status": "degraded",
    "error": None,
    "startups": [
        {
            "model": "tiny",
            "cache": "cold",
            "requested": "cold",
            "caches": {"vllm-compile": {"populated": False, "decides": True, "entries": 0, "bytes": 0}},
            "weights": {"files": 1, "bytes": 4096, "resident_bytes": 0, "dropped": True},
            "total_s": 2.5,
            "ready": True,
            "phases": {"spawn": 0.2, "weights_loaded": 1.0, "server_up": 2.3, "health_ok": 2.5},
            "lines": ["INFO weights loaded", "INFO Application startup complete."],
            "error": None,
        },
        {
            "model": "tiny",
            "cache": "warm",
            "requested": "warm",
            "caches": {"vllm-compile": {"populated": True, "decides": True, "entries": 12, "bytes": 34567}},
            "weights": None,
            "total_s": 1.5,
            "ready": True,
            "phases": {"spawn": 0.1, "health_ok": 1.5},
            "lines": [],
            "error": None,
        },
    ],
    "points": [
        {
            "index": 0,
            "model": "tiny",
            "workload": "short",
            "load": {"kind": "concurrency", "value": 4.0, "arrival": None, "burstiness": None, "max_concurrency": 4},
            "load_label": "c=4",
            "repeat": 0,
            "status": "ok",  # within the suite's max_error_rate
            "error": "1 of 3 requests failed (http_5xx 1); first: HTTP 500: injected",
            "started": "2026-11-26T23:40:03.000Z",
            "metrics": {
                "requests": 3,
                "completed": 2,
                "errors": 1,
                "error_rate": 1 / 3,
                "errors_by_kind": {"http_5xx": 1},
                "skipped": 0,
                "duration_s": 0.6,
                "request_rate": 3.33,
                "output_throughput": 20.0,
                "total_throughput": 126.7,
                "goodput": None,
                "slo_met": None,
                "prompt_tokens_mean": 32.0,
                "output_tokens_mean": 6.0,
                "ttft_ms": _stats(12.75),
                "tpot_ms": _stats(10.0),
                "itl_ms": _stats(10.0),
                "e2e_ms": _stats(101.25),
            },
            "telemetry": {"cpu_load_mean": 0.5},
            "requests": _REQUESTS,
        },
        {
            "index": 1,
            "model": "tiny",
            "workload": "short",
            "load": {"kind": "rate", "value": 2.0, "arrival": "poisson", "burstiness": 1.0, "max_concurrency": None},
            "load_label": "r=2.0/s poisson",
            "repeat": 0,
            "status": "failed",
            "error": "server died",
            "started": "2026-11-26T23:40:05.000Z",
            "metrics": {},
            "telemetry": {},
            "requests": {k: [] for k in _REQUESTS},
        },
    ],
    "log_tail": "INFO shutting down\n",
}


@pytest.fixture
def make_record_dict():
    """A fresh, valid record dict on each call, with a new run id unless one is given."""

    def make(**overrides):
        return copy.deepcopy(_RECORD) | {"run_id": new_run_id()} | overrides

    return make


@pytest.fixture
def record_dict(make_record_dict):
    return make_record_dict()


@pytest.fixture
def tmp_db(tmp_path):
    db = open_db(tmp_path / "perfci.db")
    yield db
    db.close()
