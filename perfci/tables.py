"""Terminal tables (rich) built from run records and store frames. Pure: they return renderables; the CLI
prints them."""

from __future__ import annotations

from typing import Any

import pandas as pd
from rich.table import Table

from perfci.records import RunRecord


def _ms(v: Any) -> str:
    return "—" if v is None else f"{v:,.1f}"


def _num(v: Any, fmt: str = ",.2f") -> str:
    return "—" if v is None else format(v, fmt)


def points_table(record: RunRecord) -> Table:
    sim = "  [bold magenta](sim engine: a SIMULATOR, not a real engine)[/]" if record.build.engine == "sim" else ""
    t = Table(title=f"{record.suite.name} on {record.build.engine} {record.build.version or ''}{sim}",
              caption=f"run {record.run_id} · {record.hardware.label} · status {record.status}")  # fmt: skip
    for col in ("workload", "load", "rep", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99",
                "E2E p50", "E2E p99", "errors"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("workload", "load") else "right")
    for p in record.points:
        m = p.metrics
        if p.status == "skipped":
            t.add_row(p.workload, p.load_label, str(p.repeat), *["—"] * 8, f"[yellow]skipped: {p.error}[/]")
            continue
        errors = f"{m['errors']}/{m['requests']}" if m.get("requests") else "—"
        if p.status == "failed":
            errors = f"[red]{errors} {(p.error or '').splitlines()[0][:60]}[/]"
        t.add_row(
            p.workload, p.load_label, str(p.repeat), _num(m.get("request_rate")),
            _num(m.get("output_throughput"), ",.0f"),
            _ms(m["ttft_ms"]["p50"]), _ms(m["ttft_ms"]["p99"]), _ms(m["itl_ms"]["p50"]), _ms(m["itl_ms"]["p99"]),
            _ms(m["e2e_ms"]["p50"]), _ms(m["e2e_ms"]["p99"]), errors,
        )  # fmt: skip
    return t


def startup_table(record: RunRecord) -> Table | None:
    if not record.startups:
        return None
    phases: list[str] = []
    for s in record.startups:
        phases += [k for k in s.phases if k not in phases]
    t = Table(title="startup (seconds; at_* = since spawn, others = durations)")
    for col in ("model", "cache", "ready", "total", *phases):
        t.add_column(col, justify="left" if col in ("model", "cache") else "right")
    for s in record.startups:
        t.add_row(s.model, s.cache, "yes" if s.ready else "[red]no[/]", _num(s.total_s),
                  *[_num(s.phases.get(k)) for k in phases])  # fmt: skip
    return t


def runs_table(frame: pd.DataFrame) -> Table:
    t = Table(title="stored runs")
    cols = ("run_id", "created", "suite", "engine", "version", "hardware_label", "status", "points")
    for col in cols:
        t.add_column(col)
    for row in frame.itertuples(index=False):
        t.add_row(*[_cell(getattr(row, c, None)) for c in cols])
    return t


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "—"
    return str(v)

