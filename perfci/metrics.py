"""The metric vocabulary: every metric perfci measures, stores, judges and shows, defined once.

Each metric has a flat name (the store's column and the series' `metric`), a type, a unit, a direction
(higher is better, lower is better, or none for counts that are never judged), how a point aggregates it from
its requests, and the label reports and dashboards print. perfci.measure.aggregate computes a point's metrics
as a nested dict (`{"ttft_ms": {"p50": …}}`); `flatten` turns it into the flat names used everywhere after
(`ttft_ms_p50`). Startup series are named `startup.<phase>` and `startup.total` (seconds, lower is better).
Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from perfci.errors import ConfigError, RecordError

STATS = ("mean", "std", "p50", "p90", "p95", "p99", "max")
# The latency statistics judged: all but max (a single request) and std (not a speed).
JUDGED_STATS = ("mean", "p50", "p90", "p95", "p99")
LATENCIES = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")
_LATENCY_LABELS = {"ttft_ms": "TTFT", "tpot_ms": "TPOT", "itl_ms": "ITL", "e2e_ms": "E2E latency"}
_LATENCY_MEANING = {"ttft_ms": "first token - send", "tpot_ms": "(E2E - TTFT) / (output tokens - 1)",
                    "itl_ms": "gaps between streamed chunks, pooled", "e2e_ms": "last token - send"}  # fmt: skip

# Startup series: workload "(startup)" (suite workload names cannot hold parentheses), load level = cache state.
STARTUP_WORKLOAD = "(startup)"
STARTUP_PREFIX = "startup."


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: type  # int, float or bool; None is always allowed (no data)
    unit: str  # "ms", "s", "req/s", "tok/s", "ratio", "tokens", "requests", "" (none)
    higher_is_better: bool | None  # None: never judged (a count, a duration, a flag)
    aggregation: str  # how a point gets it from its requests
    label: str
    judged: bool = False  # compared across builds (detect, A/B, bisect)

    def format(self, value: float | None) -> str:
        """The value with its unit, as reports print it."""
        if value is None or not math.isfinite(value):
            return "—"
        if self.unit == "ms":
            return f"{value:,.1f} ms"
        if self.unit == "s":
            return f"{value:,.2f} s"
        if self.unit == "ratio":
            return f"{value:.1%}"
        if self.unit == "req/s":
            return f"{value:,.2f} req/s"
        if self.unit == "tok/s":
            return f"{value:,.1f} tok/s"
        return f"{value:,.4g}"


def _scalar(name: str, kind: type, unit: str, higher: bool | None, aggregation: str, *,
            judged: bool = False) -> Metric:  # fmt: skip
    return Metric(name, kind, unit, higher, aggregation, name.replace("_", " "), judged)


# Every key of a point's metrics, in the order of the store's columns. `errors_by_kind` is not here: its kinds
# are open-ended (`http_3xx`, …), so the store keeps it in its JSON column.
METRICS: tuple[Metric, ...] = (
    _scalar("requests", int, "requests", None, "requests sent"),
    _scalar("completed", int, "requests", None, "requests that completed"),
    _scalar("errors", int, "requests", None, "requests that failed"),
    _scalar("error_rate", float, "ratio", False, "errors / requests", judged=True),
    _scalar("duration_s", float, "s", None, "first send to last completion"),
    _scalar("request_rate", float, "req/s", True, "completed requests / duration", judged=True),
    _scalar("output_throughput", float, "tok/s", True, "output tokens / duration", judged=True),
    _scalar("total_throughput", float, "tok/s", True, "prompt and output tokens / duration", judged=True),
    _scalar("goodput", float, "req/s", True, "requests within every per-request SLO / duration", judged=True),
    _scalar("slo_met", bool, "", None, "the point's percentile SLOs held"),
    _scalar("prompt_tokens_mean", float, "tokens", None, "mean over completed requests"),
    _scalar("output_tokens_mean", float, "tokens", None, "mean over completed requests"),
    _scalar("skipped", int, "requests", None, "requests not sent: the point stopped early"),
    *(Metric(f"{m}_{s}", float, "ms", False, f"{s} over requests of {_LATENCY_MEANING[m]}",
             f"{_LATENCY_LABELS[m]} {s}", s in JUDGED_STATS) for m in LATENCIES for s in STATS),  # fmt: skip
)
BY_NAME = {m.name: m for m in METRICS}
# The store's typed metric columns: name -> type.
VOCABULARY: dict[str, type] = {m.name: m.kind for m in METRICS}
# The point metrics judged across builds, latencies first.
POINT_METRICS = (*(m.name for m in METRICS if m.judged and m.unit == "ms"),
                 "request_rate", "output_throughput", "total_throughput", "goodput", "error_rate")  # fmt: skip
assert set(POINT_METRICS) == {m.name for m in METRICS if m.judged}
# Judged latency statistics: the load page's curves.
LATENCY_METRICS = tuple(m for m in POINT_METRICS if BY_NAME[m].unit == "ms")


def is_startup(name: str) -> bool:
    return name.startswith(STARTUP_PREFIX)


def higher_is_better(name: str) -> bool:
    """Throughput, request rate and goodput up is good; latencies, startup phases and error rate down is good."""
    if is_startup(name):
        return False
    metric = BY_NAME.get(name)
    if metric is None or metric.higher_is_better is None:
        raise ValueError(f"no direction is known for metric {name!r}")
    return metric.higher_is_better


def label(name: str) -> str:
    """`TTFT p50`, `output throughput`, `startup (total)`, `startup phase load_weights`."""
    if name == STARTUP_PREFIX + "total":
        return "startup (total)"
    if is_startup(name):
        return f"startup phase {name.removeprefix(STARTUP_PREFIX)}"
    metric = BY_NAME.get(name)
    return metric.label if metric is not None else name.replace("_", " ")


def format_value(name: str, value: float | None) -> str:
    """A value of the metric with its unit."""
    if is_startup(name):
        return Metric(name, float, "s", False, "", "").format(value)
    metric = BY_NAME.get(name)
    unit_of = metric if metric is not None and metric.judged else Metric(name, float, "", None, "", "")
    return unit_of.format(value)


def canonical(name: str) -> str:
    """A judged metric's name as given on the command line: `ttft_ms_p50` (`ttft_p50` is accepted),
    `output_throughput`, `startup.PHASE`, `startup.total`."""
    if is_startup(name) or name in POINT_METRICS:
        return name
    for latency in LATENCIES:
        short = latency.removesuffix("_ms") + "_"
        if name.startswith(short) and f"{latency}_{name[len(short):]}" in POINT_METRICS:
            return f"{latency}_{name[len(short):]}"
    raise ConfigError(f"--metric {name!r}: unknown; one of {', '.join(POINT_METRICS)}, startup.PHASE, startup.total")


def flatten(metrics: dict[str, Any]) -> dict[str, Any]:
    """`{"ttft_ms": {"p50": 1.0}, "requests": 3}` -> `{"ttft_ms_p50": 1.0, "requests": 3}`; lists become JSON.

    Refuses two keys that flatten to one name (`{"a": {"b": 1}, "a_b": 2}`).
    """
    items = list(_flat_items(metrics, ""))
    seen: set[str] = set()
    for name, _ in items:
        if name in seen:
            raise RecordError(f"metric {name!r} appears twice once flattened")
        seen.add(name)
    return dict(items)


def _flat_items(metrics: dict[str, Any], prefix: str) -> Iterable[tuple[str, Any]]:
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flat_items(value, f"{name}_")
        else:
            yield name, json.dumps(value) if isinstance(value, list) else value


def split(flat: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flattened metrics -> (those of the vocabulary, checked against their type; the others).
    A known metric of the wrong type is refused: its column would hold a value no reader expects."""
    known, extra = {}, {}
    for name, value in flat.items():
        kind = VOCABULARY.get(name)
        if kind is None:
            extra[name] = value
            continue
        if not _fits(value, kind):
            raise RecordError(f"metric {name!r} must be {kind.__name__} or null (got {value!r:.80})")
        known[name] = value
    return known, extra


def _fits(value: Any, kind: type) -> bool:
    if value is None:
        return True
    if kind is bool or isinstance(value, bool):  # bool is an int in Python, not in the vocabulary
        return kind is bool and isinstance(value, bool)
    return isinstance(value, int) if kind is int else isinstance(value, int | float)
