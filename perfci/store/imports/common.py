"""What every foreign-format reader shares: reading keys with errors that name the file and the key, the
request columns and point metrics under perfci's definitions, and the run record an import becomes."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import perfci
from perfci import utc
from perfci.errors import RecordError
from perfci.measure import aggregate
from perfci.measure.suites import LoadLevel
from perfci.store.records import SCHEMA_VERSION, RunRecord

_MISSING = object()


class Reader:
    """Keys of one parsed file, each failure a RecordError naming the file and the dotted key."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = path, fmt

    def error(self, key: str, what: str) -> RecordError:
        return RecordError(f"{self.path}: {self.fmt}: {key}: {what}")

    def get(self, data: Any, key: str, kind: type | tuple[type, ...] = object, *, optional: bool = False,
            where: str = "") -> Any:  # fmt: skip
        """`data[a][b]…` for key "a.b…"; None when `optional` and absent. `where` prefixes the key in errors."""
        shown = f"{where}.{key}" if where else key
        value = data
        for part in key.split("."):
            value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
            if value is _MISSING:
                if optional:
                    return None
                raise self.error(shown, "missing")
        if value is None and optional:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            raise self.error(shown, f"expected {_kind_name(kind)}, got {_short(value)}")
        if isinstance(value, float) and not math.isfinite(value) and not optional:
            raise self.error(shown, f"not a finite number ({value})")
        return value

    def number(self, data: Any, key: str, *, optional: bool = False, where: str = "") -> float | None:
        value = self.get(data, key, float, optional=optional, where=where)
        return value if value is None or math.isfinite(value) else None


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "an object", list: "a list", str: "a string", float: "a number", int: "an integer",
             bool: "true or false"}  # fmt: skip
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


@dataclass
class Requests:
    """One point's requests in the record's columns, filled from what the source kept per request."""

    send_ms: list[float | None] = field(default_factory=list)
    ttft_ms: list[float | None] = field(default_factory=list)
    e2e_ms: list[float | None] = field(default_factory=list)
    prompt_tokens: list[int | None] = field(default_factory=list)
    output_tokens: list[int | None] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    error: list[str | None] = field(default_factory=list)
    itl_ms: list[list[float]] = field(default_factory=list)

    def add(self, *, send_ms: float | None, ttft_ms: float | None, e2e_ms: float | None, prompt_tokens: int | None,
            output_tokens: int | None, error: str | None = None, itl_ms: Sequence[float] = ()) -> None:  # fmt: skip
        r3 = lambda v: None if v is None else round(v, 3)  # noqa: E731
        self.send_ms.append(r3(send_ms))
        self.ttft_ms.append(r3(ttft_ms))
        self.e2e_ms.append(r3(e2e_ms))
        self.prompt_tokens.append(prompt_tokens)
        self.output_tokens.append(output_tokens)
        self.ok.append(error is None)
        self.error.append(error)
        self.itl_ms.append([round(g, 3) for g in itl_ms])

    def record(self) -> dict[str, list]:
        """The record's columns. A foreign tool reports no HTTP status: 200 for a success (it streamed tokens),
        null for a failure, whose status it did not keep."""
        return {"send_ms": self.send_ms, "ttft_ms": self.ttft_ms, "e2e_ms": self.e2e_ms,
                "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens,
                "status": [200 if ok else None for ok in self.ok], "error": self.error,
                "error_kind": [None if ok else "other" for ok in self.ok], "itl_ms": self.itl_ms}  # fmt: skip

    def summarize(self, *, duration_s: float | None, pooled_itl: bool = True) -> dict[str, Any]:
        """perfci's point metrics (perfci.measure.aggregate's definitions and percentiles) from the per-request timings.
        `pooled_itl` False: the source kept no per-gap stamps, so ITL stays absent. Rates need the source's
        measured window (`duration_s`); without it they stay absent."""
        done = [i for i, ok in enumerate(self.ok) if ok and self.ttft_ms[i] is not None]
        out_tokens = sum(self.output_tokens[i] or 0 for i in done)
        in_tokens = sum(self.prompt_tokens[i] or 0 for i in done)
        tpot = [(self.e2e_ms[i] - self.ttft_ms[i]) / (self.output_tokens[i] - 1) for i in done  # type: ignore[operator]
                if self.e2e_ms[i] is not None and (self.output_tokens[i] or 0) > 1]  # fmt: skip
        rate = (lambda n: n / duration_s) if duration_s else (lambda n: None)
        n = len(self.ok)
        out: dict[str, Any] = {
            "requests": n, "completed": len(done), "errors": n - len(done),
            "error_rate": (n - len(done)) / n if n else None, "duration_s": duration_s,
            "request_rate": rate(len(done)), "output_throughput": rate(out_tokens),
            "total_throughput": rate(out_tokens + in_tokens),
            "prompt_tokens_mean": in_tokens / len(done) if done else None,
            "output_tokens_mean": out_tokens / len(done) if done else None,
            "ttft_ms": aggregate.stats([self.ttft_ms[i] for i in done]),
            "tpot_ms": aggregate.stats(tpot),
            "e2e_ms": aggregate.stats([self.e2e_ms[i] for i in done if self.e2e_ms[i] is not None]),
        }  # fmt: skip
        if pooled_itl:
            out["itl_ms"] = aggregate.stats([g for i in done for g in self.itl_ms[i]])
        return {k: v for k, v in out.items() if v is not None}


@dataclass
class ImportedPoint:
    """One measured load level of a foreign result."""

    model: str
    load: LoadLevel
    started: datetime
    metrics: dict[str, Any]  # perfci's names, only what the source measured (or what follows from it)
    requests: Requests
    telemetry: dict[str, Any] = field(default_factory=dict)


@dataclass
class Imported:
    """A foreign result read into perfci's terms, before build and hardware are attached."""

    tool: str  # "vllm bench serve"
    tool_version: str | None  # None: the file does not say
    engine: str | None  # what the source says served it (vllm's --backend), if anything
    definitions: str  # how the source's metrics map onto perfci's (docs/import.md)
    points: list[ImportedPoint]


def point_status(m: dict[str, Any]) -> tuple[str, str | None]:
    """As perfci judges its own points with the default thresholds: failed when nothing completed or more than
    half failed; degraded when any failed."""
    n, errors = m.get("requests"), m.get("errors")
    if not m.get("completed"):
        return "failed", "no request completed"
    if n and errors:
        why = f"{errors} of {n} requests failed"
        return ("failed" if errors / n > 0.5 else "degraded"), why
    return "ok", None


def parse_build(spec: str | None, engine: str | None) -> dict[str, str | None]:
    """`--build ENGINE[==VERSION]`; without it the engine the source names (or "unknown") and no version."""
    if spec:
        name, _, version = spec.partition("==")
        return {"engine": name.strip() or "unknown", "version": version.strip() or None}
    return {"engine": engine or "unknown", "version": None}


def to_record(imported: Imported, *, raw: bytes, fmt: str, file_name: str, build: str | None,
              hardware: str | None, now: datetime | None = None) -> RunRecord:  # fmt: skip
    """The run record of an import. Its run id derives from the file's bytes, the format, build and hardware,
    so importing the same file twice stores it once."""
    digest = hashlib.sha256(raw).hexdigest()
    b = parse_build(build, imported.engine)
    label = hardware or "unknown"
    key = hashlib.sha256(f"{digest}\0{fmt}\0{b['engine']}\0{b['version']}\0{label}".encode()).digest()
    points = []
    for i, p in enumerate(imported.points):
        status, error = point_status(p.metrics)
        points.append({
            "index": i, "model": p.model, "workload": fmt, "load": p.load.record(), "load_label": p.load.label,
            "repeat": 0, "status": status, "error": error, "started": utc.stamp(p.started), "metrics": p.metrics,
            "telemetry": p.telemetry, "requests": p.requests.record(),
        })  # fmt: skip
    statuses = {p["status"] for p in points}
    run_status = "ok" if statuses == {"ok"} else ("failed" if statuses == {"failed"} else "degraded")
    data = {
        "schema_version": SCHEMA_VERSION,
        "kind": "perfci-run",
        "run_id": str(uuid.UUID(bytes=key[:16], version=4)),
        "created": utc.stamp(now or datetime.now(UTC)),
        "perfci_version": perfci.__version__,
        "suite": {"name": f"import-{fmt}", "hash": digest[:16], "path": None},
        "build": {**b, "commit": None, "source": f"import:{fmt}"},
        "hardware": {"label": label, "fingerprint": {}},
        "engine_argv": [],
        "environment": {"imported": {"tool": imported.tool, "tool_version": imported.tool_version,
                                     "format": fmt, "file": file_name, "sha256": digest,
                                     "definitions": imported.definitions}},  # fmt: skip
        "status": run_status,
        "error": None if run_status == "ok" else "; ".join(p["error"] for p in points if p["error"]),
        "startups": [],
        "points": points,
        "log_tail": "",
    }
    return RunRecord.model_validate(data)
