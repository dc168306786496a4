"""perfci's own hot paths as pytest-benchmark benchmarks, tracked per commit.

    make bench-hot                      # .venv/bin/pytest benchmarks/hot_paths.py, JSON to bench-hot.json
    .venv/bin/pytest benchmarks/hot_paths.py --benchmark-compare   # against the last saved run

Each benchmark measures one path on fixed, seeded inputs of a realistic size: the SSE parser on a stream of
1,000 chunks cut into reads at odd places; `aggregate.summarize` on a point of 2,000 streamed requests;
`detect.change_points` on a 200-build series with one step; a bisect over 64 candidates (its posterior and
expected-information steps, against a seeded noisy measure); `store.ingest` of a 2,000-request record into a
fresh store; `perfci ingest` of a `vllm bench serve` result (the import path); and `dashboard.build_site` over
a store of 40 runs. `make test` runs each once, unmeasured (tests/test_hot_paths_smoke.py), so they cannot rot.
"""

from __future__ import annotations

import json
import random
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest

from perfci import metrics, store
from perfci.bisect import core as bisect
from perfci.config import Slo
from perfci.measure import aggregate
from perfci.measure.loadgen.client import RequestSample
from perfci.measure.loadgen.sse import SSEParser
from perfci.report import dashboard
from perfci.store import imports
from perfci.store.records import SCHEMA_VERSION, RunRecord
from perfci.verdicts import detect

FOREIGN = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "foreign"


@pytest.fixture(scope="module")
def stream_reads() -> list[bytes]:
    chunk = b'data: {"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":" w42"}]}\n\n'
    body = chunk * 1000 + b"data: [DONE]\n\n"
    rng = random.Random(1)
    reads, i = [], 0
    while i < len(body):
        n = rng.randint(1, 400)
        reads.append(body[i : i + n])
        i += n
    return reads


def test_sse_parser(benchmark, stream_reads):
    def parse() -> int:
        parser = SSEParser()
        return sum(len(parser.feed(r)) for r in stream_reads)

    assert benchmark(parse) == 1001


def _samples(n: int) -> list[RequestSample]:
    rng = np.random.default_rng(2)
    out, t = [], 0
    for _ in range(n):
        sent = t
        first = sent + int(rng.gamma(4, 5e6))
        chunks = list(first + np.cumsum(rng.gamma(4, 2e6, size=127)).astype(int))
        chunks.insert(0, first)
        out.append(RequestSample(sent, sent, first, chunks, chunks[-1], 512, 128, 200, None))
        t += int(rng.exponential(5e6))
    return out


def test_metrics_summarize(benchmark):
    samples = _samples(2000)
    end = max(s.end_ns for s in samples)
    m = benchmark(aggregate.summarize, samples, started_ns=0, ended_ns=end, slo=Slo(ttft_ms=100))
    assert m["completed"] == 2000


def test_change_points(benchmark):
    rng = np.random.default_rng(3)
    series = 100 * (1 + 0.02 * rng.standard_normal(200))
    series[120:] *= 1.1
    found = benchmark(detect.change_points, series.tolist(), higher_is_better=False)
    assert len(found) == 1 and abs(found[0].index - 120) <= 2  # noise may place it a build off


def test_bisect_posterior(benchmark):
    def run() -> bisect.BisectResult:
        rng = np.random.default_rng(4)
        measure = lambda c: 100 * (1.1 if c >= 37 else 1.0) * (1 + 0.02 * rng.standard_normal())  # noqa: E731
        return bisect.bisect(list(range(64)), measure, higher_is_better=False)

    result = benchmark(run)
    assert result.culprit == 37


def _record(requests: int) -> RunRecord:
    rng = np.random.default_rng(5)
    ttft = (20 + 5 * rng.random(requests)).round(3).tolist()
    itl = [(5 + rng.random(127)).round(3).tolist() for _ in range(requests)]
    e2e = [t + sum(g) for t, g in zip(ttft, itl, strict=True)]
    columns = {"send_ms": [float(i) for i in range(requests)], "ttft_ms": ttft, "e2e_ms": e2e,
               "prompt_tokens": [512] * requests, "output_tokens": [128] * requests, "status": [200] * requests,
               "error": [None] * requests, "error_kind": [None] * requests, "itl_ms": itl}  # fmt: skip
    stats = {"mean": 1.0, "std": 0.1, "p50": 1.0, "p90": 1.1, "p95": 1.2, "p99": 1.3, "max": 1.5}
    return RunRecord.model_validate({
        "schema_version": SCHEMA_VERSION, "kind": "perfci-run", "run_id": str(uuid.UUID(int=5, version=4)),
        "created": "2026-11-01T00:00:00.000Z", "perfci_version": "0.1.0",
        "suite": {"name": "bench", "hash": "0123456789abcdef", "path": None},
        "build": {"engine": "sim", "version": "1", "commit": None, "source": "builtin"},
        "hardware": {"label": "cpu-bench", "fingerprint": {}}, "engine_argv": [], "environment": {},
        "status": "ok", "error": None, "startups": [], "log_tail": "",
        "points": [{"index": 0, "model": "m", "workload": "w",
                    "load": {"kind": "concurrency", "value": 8.0, "arrival": None, "burstiness": None,
                             "max_concurrency": None},
                    "load_label": "c=8", "repeat": 0, "status": "ok", "error": None,
                    "started": "2026-11-01T00:00:00.000Z", "telemetry": {}, "requests": columns,
                    "metrics": {"requests": requests, "completed": requests,
                                **{k: stats for k in metrics.LATENCIES}}}],
    })  # fmt: skip


def test_store_ingest(benchmark, tmp_path):
    record = _record(2000)
    made = iter(range(1_000_000))

    def setup():
        return (store.open_db(tmp_path / f"s{next(made)}.db"), record), {}

    assert benchmark.pedantic(store.ingest, setup=setup, rounds=5) is True


def test_import_vllm_bench_result(benchmark):
    record = benchmark(imports.load, FOREIGN / "vllm-bench-serve.json")
    completed = json.loads((FOREIGN / "vllm-bench-serve.json").read_text())["completed"]
    assert record.points[0].metrics["completed"] == completed


@pytest.fixture(scope="module")
def dashboard_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dash") / "perfci.db"
    db = store.open_db(path)
    for build in range(40):
        r = _record(10).model_dump()
        r["run_id"] = str(uuid.UUID(int=1000 + build, version=4))
        r["build"]["version"] = f"0.{build}.0"
        r["created"] = f"2026-11-{1 + build % 28:02d}T00:{build:02d}:00.000Z"
        store.ingest(db, RunRecord.model_validate(r))
    db.close()
    return path


def test_dashboard_build(benchmark, dashboard_store):
    db = store.open_db(dashboard_store, readonly=True)
    costs = dashboard.load_costs()

    def build():
        with tempfile.TemporaryDirectory() as tmp:
            return dashboard.build_site(db, Path(tmp) / "site", costs=costs)

    benchmark.pedantic(build, rounds=3)
