"""guidellm's JSON report (`--output kind=json`, report version 2, guidellm 0.8): one load level per
benchmark.

guidellm defines TPOT and ITL differently from vLLM and perfci (docs/metrics.md): its TPOT divides by all
output tokens, its ITL is each request's mean gap. So its summaries are not taken; the point's metrics are
computed by perfci's code from the per-request timings guidellm keeps (request start, first and last token,
token counts): TTFT, TPOT and E2E under perfci's definitions. guidellm keeps no per-gap stamps, so ITL stays
absent. Requests are kept only when the report holds them all (its `sample_size` unset, the default).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perfci.measure.suites import LoadLevel
from perfci.store.imports.common import Imported, ImportedPoint, Reader, Requests

NAME = "guidellm"
TOOL = "guidellm"


def detect(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("benchmarks"), list) and (
        "guidellm_version" in (data.get("metadata") or {}) or any(
            isinstance(b, dict) and b.get("type_") == "generative_benchmark" for b in data["benchmarks"]))  # fmt: skip


def read(data: dict, path: Path) -> Imported:
    r = Reader(path, NAME)
    version = r.get(data, "metadata.guidellm_version", str, optional=True)
    benchmarks = r.get(data, "benchmarks", list)
    if not benchmarks:
        raise r.error("benchmarks", "empty: the report holds no benchmark")
    points = [_point(r, b, f"benchmarks[{i}]") for i, b in enumerate(benchmarks)]
    # Its backend names the protocol (openai_http), never the engine behind it.
    return Imported(tool=TOOL, tool_version=version, engine=None,
                    definitions="perfci's, recomputed from guidellm's per-request timings; no ITL",
                    points=points)  # fmt: skip


def benchmark_metrics(benchmark: dict, path: Path) -> dict[str, Any]:
    """perfci's metrics of one benchmark of a report read from `path` (named in errors)."""
    return _point(Reader(path, NAME), benchmark, "benchmark").metrics


def _point(r: Reader, b: Any, where: str) -> ImportedPoint:
    if not isinstance(b, dict):
        raise r.error(where, "expected an object")
    requests = _requests(r, b, where)
    duration = r.number(b, "duration", where=where)
    return ImportedPoint(model=r.get(b, "config.backend.model", str, where=where), load=_load(r, b, where),
                         started=datetime.fromtimestamp(r.number(b, "start_time", where=where), UTC),
                         metrics=requests.summarize(duration_s=duration, pooled_itl=False),
                         requests=requests)  # fmt: skip


def _requests(r: Reader, b: dict, where: str) -> Requests:
    totals = r.get(b, "metrics.request_totals", dict, where=where)
    kept = r.get(b, "requests", dict, where=where)
    ok_rows, bad_rows = r.get(kept, "successful", list, where=f"{where}.requests"), kept.get("errored") or []
    if len(ok_rows) != totals.get("successful") or len(bad_rows) != totals.get("errored", 0):
        raise r.error(f"{where}.requests", f"holds a sample ({len(ok_rows)} of {totals.get('successful')} successful "
                                           "requests): run guidellm without a sample size to import it")  # fmt: skip
    start = r.number(b, "start_time", where=where)
    rows = [(row, None) for row in ok_rows] + [(row, "error") for row in bad_rows]
    rows.sort(key=lambda item: _timing(item[0], "request_start") or 0.0)
    out = Requests()
    for i, (row, failed) in enumerate(rows):
        t = r.get(row, "info.timings", dict, where=f"{where}.requests[{i}]")
        sent, first, last = t.get("request_start"), t.get("first_token_iteration"), t.get("last_token_iteration")
        if sent is None:
            raise r.error(f"{where}.requests[{i}].info.timings.request_start", "missing")
        error = row.get("info", {}).get("error") or failed
        if error is None and first is None:
            error = "no token received"
        done = error is None
        out.add(send_ms=(sent - start) * 1e3, ttft_ms=(first - sent) * 1e3 if done else None,
                e2e_ms=(last - sent) * 1e3 if done else None, prompt_tokens=row.get("prompt_tokens"),
                output_tokens=row.get("output_tokens") if done else None,
                error=None if done else str(error))  # fmt: skip
    return out


def _timing(row: dict, key: str) -> float | None:
    return ((row.get("info") or {}).get("timings") or {}).get(key)


def _load(r: Reader, b: dict, where: str) -> LoadLevel:
    s = r.get(b, "config.strategy", dict, where=where)
    kind = r.get(s, "type_", str, where=f"{where}.config.strategy")
    if kind == "synchronous":
        return LoadLevel("synchronous", value=1.0)
    if kind == "concurrent":
        return LoadLevel("concurrency", value=float(r.get(s, "streams", int, where=f"{where}.config.strategy")))
    if kind == "throughput":
        return LoadLevel("throughput", value=float(s.get("max_concurrency") or 0) or None)
    if kind in ("constant", "poisson"):
        return LoadLevel("rate", value=r.number(s, "rate", where=f"{where}.config.strategy"), arrival=kind,
                         burstiness=1.0 if kind == "poisson" else None,
                         max_concurrency=s.get("max_concurrency"))  # fmt: skip
    raise r.error(f"{where}.config.strategy.type_", f"{kind!r} has no perfci load level (synchronous, concurrent, "
                                                    "throughput, constant, poisson)")  # fmt: skip
