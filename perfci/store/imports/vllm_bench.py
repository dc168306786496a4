"""`vllm bench serve --save-result` JSON: one load level per file.

vLLM's definitions are perfci's (perfci follows them, docs/metrics.md). With `--save-detailed` the file keeps
every request (start, TTFT, chunk gaps, latency, lengths, error), and the point's metrics are computed from them
by perfci's own code, exactly as for a perfci run. Without it only vLLM's summary is there: its mean, median and
the `--metric-percentiles` it was asked for are taken; its standard deviation (numpy's, ddof 0, where perfci
uses ddof 1) and the maximum, which it does not report, stay absent. The file names no vLLM version.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

from perfci.measure.suites import LoadLevel
from perfci.store.imports.common import Imported, ImportedPoint, Reader, Requests

NAME = "vllm-bench"
TOOL = "vllm bench serve"
_LATENCIES = (("ttft", "ttft_ms"), ("tpot", "tpot_ms"), ("itl", "itl_ms"), ("e2el", "e2e_ms"))
_DETAIL = ("start_times", "ttfts", "itls", "latencies", "input_lens", "output_lens", "errors")


def detect(data: Any) -> bool:
    return isinstance(data, dict) and {"completed", "request_throughput", "output_throughput"} <= data.keys() and (
        "mean_ttft_ms" in data)  # fmt: skip


def read(data: dict, path: Path) -> Imported:
    r = Reader(path, NAME)
    detailed = all(k in data for k in _DETAIL)
    duration = r.number(data, "duration")
    if detailed:
        requests = _requests(r, data)
        m = requests.summarize(duration_s=duration)
    else:
        requests = Requests()
        m = summary_metrics(r, data)
    return Imported(tool=TOOL, tool_version=None, engine=r.get(data, "backend", str, optional=True),
                    definitions="vLLM's own, which perfci follows", points=[ImportedPoint(
                        model=r.get(data, "model_id", str), load=_load(r, data), started=_started(r, data),
                        metrics=m, requests=requests)])  # fmt: skip


def summary(data: dict, path: Path) -> dict[str, Any]:
    """perfci's metrics from the summary keys of a result read from `path` (named in errors), as vLLM computed
    them, whether or not the file keeps its requests."""
    return summary_metrics(Reader(path, NAME), data)


def summary_metrics(r: Reader, data: dict) -> dict[str, Any]:
    """perfci's metrics from vLLM's summary keys alone (no per-request data)."""
    completed, failed = r.get(data, "completed", int), r.get(data, "failed", int, optional=True) or 0
    m: dict[str, Any] = {
        "requests": completed + failed, "completed": completed, "errors": failed,
        "error_rate": failed / (completed + failed) if completed + failed else None,
        "duration_s": r.number(data, "duration"), "request_rate": r.number(data, "request_throughput"),
        "output_throughput": r.number(data, "output_throughput"),
        "total_throughput": r.number(data, "total_token_throughput", optional=True),
    }  # fmt: skip
    if completed:
        for key, name in (("total_input_tokens", "prompt_tokens_mean"), ("total_output_tokens", "output_tokens_mean")):
            total = r.get(data, key, int, optional=True)
            m[name] = None if total is None else total / completed
    for source, name in _LATENCIES:
        stats = {"mean": r.number(data, f"mean_{source}_ms", optional=True),
                 "p50": r.number(data, f"median_{source}_ms", optional=True)}  # fmt: skip
        for p in ("90", "95", "99"):
            stats[f"p{p}"] = r.number(data, f"p{p}_{source}_ms", optional=True)
        if any(v is not None for v in stats.values()):
            m[name] = {k: v for k, v in stats.items() if v is not None}
    return {k: v for k, v in m.items() if v is not None}


def _requests(r: Reader, data: dict) -> Requests:
    columns = [r.get(data, k, list) for k in _DETAIL]
    if len({len(c) for c in columns}) != 1:
        shown = ", ".join(f"{k}={len(c)}" for k, c in zip(_DETAIL, columns, strict=True))
        raise r.error("start_times", f"the per-request lists differ in length ({shown})")
    starts, ttfts, itls, latencies, ins, outs, errors = columns
    first = min(starts) if starts else 0.0
    out = Requests()
    for i, (start, ttft, itl, latency, n_in, n_out, error) in enumerate(zip(*columns, strict=True)):
        where = f"[{i}]"
        if not isinstance(start, int | float) or not isinstance(itl, list):
            raise r.error(f"start_times{where}", f"expected a number and a list of gaps, got {start!r:.40}, "
                                                 f"{itl!r:.40}")  # fmt: skip
        failed = bool(error) or not ttft
        out.add(send_ms=(start - first) * 1e3, ttft_ms=None if failed else ttft * 1e3,
                e2e_ms=None if failed else latency * 1e3, prompt_tokens=n_in, output_tokens=None if failed else n_out,
                error=(error or "no token received") if failed else None,
                itl_ms=() if failed else [g * 1e3 for g in itl])  # fmt: skip
    return out


def _load(r: Reader, data: dict) -> LoadLevel:
    rate = data.get("request_rate", "inf")
    cap = r.get(data, "max_concurrency", int, optional=True)
    if rate == "inf" or (isinstance(rate, float) and math.isinf(rate)):
        if cap is None:
            return LoadLevel("throughput", value=float(r.get(data, "num_prompts", int, optional=True) or 0) or None)
        return LoadLevel("concurrency", value=float(cap))
    rate = r.number(data, "request_rate")
    burstiness = r.number(data, "burstiness", optional=True) or 1.0
    arrival = "poisson" if burstiness == 1.0 else "gamma"
    return LoadLevel("rate", value=rate, arrival=arrival, burstiness=burstiness, max_concurrency=cap)


def _started(r: Reader, data: dict) -> datetime:
    """vLLM writes its local time without a zone (`%Y%m%d-%H%M%S`): read in the importing machine's zone."""
    text = r.get(data, "date", str)
    try:
        return datetime.strptime(text, "%Y%m%d-%H%M%S").astimezone()
    except ValueError:
        raise r.error("date", f"expected YYYYMMDD-HHMMSS, got {text!r}") from None
