"""aiperf's summary export (`profile_export_aiperf.json`, schema 1.x): one load level per file.

The export holds summaries only (per-request records are in another file), so the point's metrics are
aiperf's, mapped by definition: `time_to_first_token` is perfci's TTFT; aiperf's `inter_token_latency`,
(latency − TTFT) / (output tokens − 1) per request, is perfci's TPOT; `inter_chunk_latency`, every gap between
streamed chunks pooled, is perfci's ITL; `request_latency` is E2E. Its mean, percentiles and maximum are
taken; its standard deviation (numpy's, ddof 0) stays absent, and so does what it did not measure.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from perfci.measure.suites import LoadLevel
from perfci.store.imports.common import Imported, ImportedPoint, Reader, Requests

NAME = "aiperf"
TOOL = "aiperf"
_LATENCIES = (("time_to_first_token", "ttft_ms"), ("inter_token_latency", "tpot_ms"),
              ("inter_chunk_latency", "itl_ms"), ("request_latency", "e2e_ms"))  # fmt: skip
_STATS = (("avg", "mean"), ("p50", "p50"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99"), ("max", "max"))
_SCALARS = (("request_count", "requests", int), ("completed_request_count", "completed", int),
            ("error_request_count", "errors", int), ("benchmark_duration", "duration_s", float),
            ("request_throughput", "request_rate", float), ("output_token_throughput", "output_throughput", float),
            ("total_token_throughput", "total_throughput", float),
            ("input_sequence_length", "prompt_tokens_mean", float),
            ("output_sequence_length", "output_tokens_mean", float))  # fmt: skip


def detect(data: Any) -> bool:
    return isinstance(data, dict) and "aiperf_version" in data and "input_config" in data


def read(data: dict, path: Path) -> Imported:
    r = Reader(path, NAME)
    m: dict[str, Any] = {}
    for key, name, kind in _SCALARS:
        value = r.number(data, f"{key}.avg", optional=True)
        if value is not None:
            m[name] = round(value) if kind is int else value
    if "completed" not in m and "requests" in m:
        m["completed"] = m["requests"] - m.get("errors", 0)
    m.setdefault("errors", m.get("requests", 0) - m.get("completed", 0))
    if m.get("requests"):
        m["error_rate"] = m["errors"] / m["requests"]
    for key, name in _LATENCIES:
        block = r.get(data, key, dict, optional=True)
        if block is None:
            continue
        unit = r.get(block, "unit", str, where=key)
        if unit != "ms":
            raise r.error(f"{key}.unit", f"expected ms, got {unit!r}")
        stats = {ours: r.number(block, theirs, optional=True, where=key) for theirs, ours in _STATS}
        m[name] = {k: v for k, v in stats.items() if v is not None}
    model = r.get(data, "input_config.models.items", list)
    if not model or not isinstance(model[0], dict) or not isinstance(model[0].get("name"), str):
        raise r.error("input_config.models.items", "expected a list of models with a name")
    return Imported(tool=TOOL, tool_version=r.get(data, "aiperf_version", str), engine=None,
                    definitions="aiperf's, mapped by definition (inter_token_latency is TPOT, inter_chunk_latency "
                                "ITL); no per-request data",
                    points=[ImportedPoint(model=model[0]["name"], load=_load(r, data), started=_started(r, data),
                                          metrics=m, requests=Requests())])  # fmt: skip


def _load(r: Reader, data: dict) -> LoadLevel:
    phases = r.get(data, "input_config.phases", list)
    profiling = [p for p in phases if isinstance(p, dict) and p.get("kind") == "profiling"]
    if len(profiling) != 1:
        raise r.error("input_config.phases", f"expected one profiling phase, found {len(profiling)}")
    phase = profiling[0]
    concurrency = r.get(phase, "concurrency", int, optional=True, where="input_config.phases[profiling]")
    rate = r.number(phase, "request_rate", optional=True, where="input_config.phases[profiling]")
    if rate:
        return LoadLevel("rate", value=rate, arrival="poisson", burstiness=1.0, max_concurrency=concurrency)
    if concurrency:
        return LoadLevel("concurrency", value=float(concurrency))
    raise r.error("input_config.phases[profiling]", "names neither a concurrency nor a request rate")


def _started(r: Reader, data: dict) -> datetime:
    """aiperf writes its local time without a zone: read in the importing machine's zone."""
    text = r.get(data, "start_time", str)
    try:
        return datetime.fromisoformat(text).astimezone()
    except ValueError:
        raise r.error("start_time", f"expected an ISO time, got {text!r}") from None
