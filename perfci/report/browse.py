"""Datasette metadata for a perfci store (`perfci datasette-metadata`, docs/export.md): titles, column
descriptions and units from the metric vocabulary, facets, and descriptions of the views migration 0010 makes.

    datasette perfci.db -m metadata.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perfci.metrics import BY_NAME, VOCABULARY

# Datasette's units are Pint's: the vocabulary's units Pint knows; tokens and requests have none.
PINT_UNITS = {"ms": "ms", "s": "s", "req/s": "Hz"}
LATENCY_MEANING = {"tpot_ms": "(E2E − TTFT) / (output tokens − 1), per request"}

VIEWS = {
    "run_hardware": "Each run's hardware fingerprint, unpacked from runs.hardware",
    "point_telemetry": "Each point's telemetry (min, mean, max per reading), unpacked from points.telemetry",
    "request_itl": "Every inter-token gap of every request, one row each, unpacked from requests.itl_ms",
    "imported_runs": "Runs imported from other tools (perfci ingest): the tool, its version and the file",
    "latest_runs": "The latest run of each suite, engine and hardware label",
    "open_findings": "Open findings (perfci detect) with each series they hold",
}


def metric_description(name: str) -> str:
    """What a column of the metric vocabulary holds: its label, how a point aggregates it, its unit."""
    m = BY_NAME[name]
    unit = f" ({m.unit})" if m.unit and m.unit not in PINT_UNITS else ""
    return f"{m.label}: {m.aggregation}{unit}"


def metadata(db_path: Path | str = "perfci.db") -> dict[str, Any]:
    """Datasette metadata for the store at `db_path` (Datasette names a database after its file's stem)."""
    points_columns = {name: metric_description(name) for name in VOCABULARY}
    points_columns |= {"load_label": "load level: sync, c=N (closed loop), r=R/s … (open loop), throughput",
                       "status": "ok, degraded, failed or skipped (docs/metrics.md, Point status)",
                       "telemetry": "JSON: see the point_telemetry view",
                       "extra_metrics": "JSON: metrics outside the vocabulary"}  # fmt: skip
    units = {name: PINT_UNITS[BY_NAME[name].unit] for name in VOCABULARY if BY_NAME[name].unit in PINT_UNITS}
    tables: dict[str, Any] = {
        "runs": {"description": "One row per run record", "facets": ["suite", "engine", "hardware_label", "status"],
                 "columns": {"hardware": "JSON: see the run_hardware view", "source": "how the build was "
                             "installed; import:FORMAT for a result imported from another tool"}},
        "points": {"description": "One row per measured load level; metric columns in perfci's vocabulary",
                   "facets": ["model", "workload", "load_label", "status"], "columns": points_columns,
                   "units": units},
        "requests": {"description": "One row per request of a point",
                     "columns": {"itl_ms": "JSON list: see the request_itl view",
                                 "tpot_ms": LATENCY_MEANING["tpot_ms"]},
                     "units": {"send_ms": "ms", "ttft_ms": "ms", "e2e_ms": "ms", "tpot_ms": "ms"}},
        "startups": {"description": "One row per engine start", "facets": ["model", "cache"],
                     "units": {"total_s": "s"}},
        "startup_phases": {"description": "Seconds per startup phase", "facets": ["phase"], "units": {"seconds": "s"}},
        "regressions": {"description": "Findings of perfci detect", "facets": ["status", "engine", "hardware_label"]},
        "request_itl": {"description": VIEWS["request_itl"], "units": {"itl_ms": "ms"}},
    }  # fmt: skip
    for view, text in VIEWS.items():
        tables.setdefault(view, {"description": text})
    return {
        "title": "perfci store",
        "description": "Performance runs of LLM serving engines, as perfci stored them (docs/records.md)",
        "databases": {Path(db_path).stem: {"tables": tables}},
    }
