"""Per-request samples -> point aggregates. Pure: no clocks, no I/O. What each metric is (name, unit,
direction, label) is perfci.metrics'.

Definitions (docs/metrics.md) follow `vllm bench serve`: TTFT = first token - send; E2E = last token - send
(time to last token); TPOT = (E2E - TTFT) / (output tokens - 1), only for requests with > 1 output token;
ITL = every gap between consecutive streamed chunks, pooled over requests (so spikes stay visible).
Percentiles interpolate linearly between order statistics (numpy's default, as vLLM).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perfci.config import Run, Slo
from perfci.measure.loadgen.client import RequestSample
from perfci.metrics import LATENCIES, STATS


@dataclass(frozen=True, slots=True)
class RequestTimes:
    """One request's latencies in milliseconds (None where undefined)."""

    send_ms: float
    ttft_ms: float | None
    e2e_ms: float | None
    tpot_ms: float | None
    itl_ms: tuple[float, ...]


def request_times(sample: RequestSample, point_start_ns: int) -> RequestTimes:
    ms = 1e-6
    send = (sample.sent_ns - point_start_ns) * ms
    if not sample.ok or sample.first_token_ns is None:
        return RequestTimes(send, None, None, None, ())
    ttft = (sample.first_token_ns - sample.sent_ns) * ms
    last = sample.chunk_ns[-1] if sample.chunk_ns else sample.first_token_ns
    e2e = (last - sample.sent_ns) * ms
    tpot = (e2e - ttft) / (sample.output_tokens - 1) if sample.output_tokens > 1 else None
    gaps = tuple(float(g) * ms for g in np.diff(sample.chunk_ns)) if len(sample.chunk_ns) > 1 else ()
    return RequestTimes(send, ttft, e2e, tpot, gaps)


def stats(values: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """mean, std (sample, ddof=1), p50/p90/p95/p99, max; all None for an empty sample."""
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return dict.fromkeys(STATS)
    p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99])
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "p50": float(p50),
        "p90": float(p90),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(a.max()),
    }


def summarize(samples: Sequence[RequestSample], *, started_ns: int, ended_ns: int, slo: Slo,
              skipped: int | None = 0) -> dict:  # fmt: skip
    """Aggregate one point. Rates divide by the measured window: first send to last completion. `skipped`:
    planned requests the point did not send because it stopped early (None: the point had no request count)."""
    times = [request_times(s, started_ns) for s in samples]
    ok = [(s, t) for s, t in zip(samples, times, strict=True) if s.ok and t.ttft_ms is not None]
    duration_s = max(ended_ns - started_ns, 0) / 1e9
    per_s = (lambda n: n / duration_s) if duration_s > 0 else (lambda n: 0.0)
    out_tokens = sum(s.output_tokens for s, _ in ok)
    in_tokens = sum(s.prompt_tokens for s, _ in ok)
    series = {
        "ttft_ms": [t.ttft_ms for _, t in ok],
        "tpot_ms": [t.tpot_ms for _, t in ok if t.tpot_ms is not None],
        "itl_ms": [g for _, t in ok for g in t.itl_ms],
        "e2e_ms": [t.e2e_ms for _, t in ok],
    }
    good = sum(1 for _, t in ok if meets_request_slo(t, slo))
    n = len(samples)
    kinds = Counter(s.error_kind or "other" for s in samples if not s.ok)
    return {
        "requests": n,
        "completed": len(ok),
        "errors": n - len(ok),
        "error_rate": (n - len(ok)) / n if n else None,
        "errors_by_kind": dict(sorted(kinds.items())),
        "skipped": skipped,
        "duration_s": duration_s,
        "request_rate": per_s(len(ok)),
        "output_throughput": per_s(out_tokens),
        "total_throughput": per_s(out_tokens + in_tokens),
        "goodput": per_s(good) if has_limits(slo) else None,
        "slo_met": (bool(ok) and point_meets_slo(series, slo)) if has_limits(slo) else None,
        "prompt_tokens_mean": in_tokens / len(ok) if ok else None,
        "output_tokens_mean": out_tokens / len(ok) if ok else None,
        **{name: stats(values) for name, values in series.items()},
    }


def point_status(m: dict, *, stopped: str | None, run: Run, first_error: str | None = None) -> tuple[str, str | None]:
    """A measured point's status and why (docs/metrics.md, "Point status"): `failed` when nothing completed
    or the error rate is above `run.failed_error_rate`; `degraded` when it is above `run.max_error_rate` or
    the point stopped early; else `ok`. Only `ok` points are ever compared or used as a baseline."""
    n, errors, rate = m["requests"], m["errors"], m["error_rate"]
    kinds = ", ".join(f"{kind} {count}" for kind, count in m["errors_by_kind"].items())
    parts = [f"{errors} of {n} requests failed ({kinds})"] if errors else []
    if first_error:
        parts.append(f"first: {first_error}")
    if stopped:
        parts.append(stopped + (f"; {m['skipped']} requests not sent" if m.get("skipped") else ""))
    why = "; ".join(parts) or None
    if not m["completed"]:
        return "failed", why or "no request was sent"
    if rate > run.failed_error_rate:
        return "failed", why
    if rate > run.max_error_rate or stopped:
        return "degraded", why
    return "ok", why


def has_limits(slo: Slo) -> bool:
    return any(getattr(slo, m) is not None for m in LATENCIES)


def meets_request_slo(t: RequestTimes, slo: Slo) -> bool:
    """Per-request goodput test, as `vllm bench serve --goodput` (TTFT, TPOT, E2E; ITL is judged per point)."""
    checks = ((t.ttft_ms, slo.ttft_ms), (t.tpot_ms, slo.tpot_ms), (t.e2e_ms, slo.e2e_ms))
    return all(limit is None or value is None or value <= limit for value, limit in checks)


def point_meets_slo(series: dict[str, list[float]], slo: Slo) -> bool:
    for name in LATENCIES:
        limit = getattr(slo, name)
        if limit is not None and series[name] and np.percentile(series[name], slo.percentile) > limit:
            return False
    return True


def compact_requests(samples: Sequence[RequestSample], started_ns: int) -> dict[str, list]:
    """Per-request samples in the run record's columnar form (milliseconds, rounded to the microsecond)."""
    times = [request_times(s, started_ns) for s in samples]
    r3 = lambda v: None if v is None else round(v, 3)  # noqa: E731
    return {
        "send_ms": [r3(t.send_ms) for t in times],
        "ttft_ms": [r3(t.ttft_ms) for t in times],
        "e2e_ms": [r3(t.e2e_ms) for t in times],
        "prompt_tokens": [s.prompt_tokens for s in samples],
        "output_tokens": [s.output_tokens for s in samples],
        "status": [s.status for s in samples],
        "error": [s.error for s in samples],
        "error_kind": [s.error_kind for s in samples],
        "itl_ms": [[round(g, 3) for g in t.itl_ms] for t in times],
    }
