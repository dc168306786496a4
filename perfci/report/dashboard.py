"""The static dashboard site, built from the store: overview, trends, latency vs load, engine vs engine, startup,
cost, A/B sessions and one page per run (docs/dashboards.md).

Each page carries its data as JSON in a `<script type="application/json">` block and draws it with the vendored
uPlot (dashboards/vendor/), so the site opens from disk or any static host with no network. Trend series are
sharded into one small script per (engine, hardware, suite, metric) under data/, loaded when a filter asks for
it, so a store with 100k points still gives light pages. Everything read from the store is untrusted text:
jinja2 autoescapes the HTML, JSON is dumped HTML-safe, and the page script only ever sets `textContent`. No
path from the store is trusted either: run records are copied into the site only from the records folder.
"""

from __future__ import annotations

import fnmatch
import functools
import http.server
import json
import math
import re
import shlex
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from jinja2.utils import htmlsafe_json_dumps
from pydantic import Field
from sqlite_utils import Database

from perfci import store
from perfci.config import Slo, Strict, Suite, load_suite, load_toml
from perfci.errors import ConfigError
from perfci.measure import engines
from perfci.measure.caches import STATES
from perfci.metrics import JUDGED_STATS, LATENCIES, LATENCY_METRICS, STARTUP_PREFIX, STARTUP_WORKLOAD, higher_is_better
from perfci.metrics import label as metric_label
from perfci.resources import copy_tree, shipped, template_loader
from perfci.store import bisects as stored_bisects
from perfci.store import sessions
from perfci.store.records import RUN_ID_PATTERN
from perfci.verdicts import ab, detect, findings, series

MARKER = ".perfci-site"  # a folder holding this file is a site perfci built, and may be replaced by a new one
COMPARED_BUILDS = 3  # newest builds per engine and scope that the engine-vs-engine page can pick from


class Costs(Strict):
    """$/GPU-hour by hardware label: fnmatch patterns, the first that matches wins. A machine with no GPU
    counts as one unit, so `cpu-*` is a price per machine-hour."""

    usd_per_gpu_hour: dict[str, float] = Field(min_length=1)

    def hourly(self, hardware_label: str, gpus: int) -> float | None:
        for pattern, price in self.usd_per_gpu_hour.items():
            if fnmatch.fnmatchcase(hardware_label, pattern):
                return price * max(gpus, 1)
        return None


def load_costs(path: str | Path | None = None) -> Costs:
    """The cost table at `path`; None: the one perfci ships (dashboards/costs.toml)."""
    path = shipped("dashboards") / "costs.toml" if path is None else Path(path)
    costs = load_toml(path, Costs, what="cost table")
    bad = {k: v for k, v in costs.usd_per_gpu_hour.items() if not (math.isfinite(v) and v > 0)}
    if bad:
        key, value = next(iter(bad.items()))
        raise ConfigError(f"{path}: usd_per_gpu_hour.{key}: must be a positive price (got {value!r})")
    return costs


@dataclass
class SiteReport:
    out: Path
    pages: int = 0
    data_files: int = 0
    bytes: int = 0
    runs: int = 0
    points: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "pages": self.pages, "data_files": self.data_files, "bytes": self.bytes,
                "runs": self.runs, "points": self.points, "notes": self.notes}  # fmt: skip

    def summary(self) -> str:
        head = (f"{self.out}: {self.pages} pages, {self.data_files} data files, {self.bytes / 1e6:.1f} MB "
                f"from {self.runs} runs and {self.points} points")  # fmt: skip
        return "\n".join([head, *self.notes])


def build_site(db: Database, out: str | Path, *, costs: Costs, records_dir: str | Path | None = None,
               suite_loader: Callable[[str], Suite] = load_suite) -> SiteReport:  # fmt: skip
    """Build the site into `out`. It is written beside `out` first and swapped in whole, so a failed build
    leaves the previous site as it was; an existing `out` that is not a perfci site is refused. Each run's
    record is copied next to its page when `records_dir` holds it (`record_file`)."""
    out = Path(out)
    if out.exists() and not (out / MARKER).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not a site perfci built (no {MARKER}); choose another --out")
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        report = _write_site(db, tmp, costs, suite_loader, records_dir and Path(records_dir))
        if out.exists():
            old = out.with_name(f".{out.name}.{uuid.uuid4().hex}.old")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.out = out
    return report


def serve(directory: str | Path, *, host: str = "127.0.0.1", port: int = 8000) -> http.server.ThreadingHTTPServer:
    """An HTTP server for a built site (call `serve_forever` on it); port 0 picks a free port."""
    directory = Path(directory)
    if not (directory / "index.html").is_file():
        raise ConfigError(f"{directory}: no index.html; build the site first (perfci dashboard --out {directory})")
    handler = functools.partial(_QuietHandler, directory=str(directory))
    return http.server.ThreadingHTTPServer((host, port), handler)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass


# --- building -----------------------------------------------------------------------------------------------


def _write_site(db: Database, root: Path, costs: Costs, suite_loader: Callable[[str], Suite],
                records_dir: Path | None) -> SiteReport:  # fmt: skip
    root.mkdir(parents=True)
    (root / MARKER).write_text("built by perfci dashboard\n")
    source = shipped("dashboards")
    copy_tree(source / "static", root / "assets")
    copy_tree(source / "vendor", root / "assets" / "vendor")
    env = jinja2.Environment(loader=template_loader(source / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)  # fmt: skip
    env.filters["json"] = htmlsafe_json_dumps

    runs = series.runs(db)
    points = store.points_frame(db)
    obs = series.observations(db)
    report = SiteReport(root, runs=len(runs), points=len(points))
    slos = _slos(runs, suite_loader, report.notes)

    def page(name: str, template: str, **context: Any) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        html = env.get_template(template).render(root="../" * name.count("/"), page=template[:-5], **context)
        path.write_text(html)
        report.pages += 1

    def data_file(name: str, data: Any) -> None:
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # A script, not a .json fetch: browsers refuse fetch() from file:// pages, never a <script src>.
        path.write_text(f"perfciShard({htmlsafe_json_dumps(name)}, {htmlsafe_json_dumps(data)});\n")
        report.data_files += 1

    page("index.html", "index.html", data=overview(db, runs, points))
    manifest, shards = trends(db, obs, runs)
    for name, shard in shards.items():
        data_file(name, shard)
    page("trends.html", "trends.html", data=manifest)
    levels = load_levels(points)
    manifest, shards = latency_vs_load(levels, slos)
    for name, shard in shards.items():
        data_file(name, shard)
    page("load.html", "load.html", data=manifest)
    kernels = kernels_by_build(runs)
    page("engines.html", "engines.html", data=engine_vs_engine(obs), kernels=kernels)
    page("startup.html", "startup.html", data=startup(obs), kernels=kernels)
    page("cost.html", "cost.html", data=cost(levels, runs, costs))
    page("ab.html", "ab.html", sessions=ab_sessions(db))
    by_run = dict(list(points.groupby("run_id", sort=False)))
    for run in runs.itertuples(index=False):
        if not isinstance(run.run_id, str) or not re.fullmatch(RUN_ID_PATTERN, run.run_id):
            report.notes.append(f"run {str(run.run_id)[:80]!r}: not a run id (a store edited by hand?); no page")
            continue  # it names files: it must not lead out of the site
        source = None if records_dir is None else record_file(records_dir, run.run_id, run.created, run.record_path)
        download = source is not None and _copy_record(source, root / "runs" / f"{run.run_id}.json")
        shown = run_page(run, by_run.get(run.run_id, points[:0]), download)
        page(f"runs/{run.run_id}.html", "run.html", run=shown, data=shown["table"])
    report.bytes = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return report


def _slos(runs: pd.DataFrame, suite_loader: Callable[[str], Suite], notes: list[str]) -> dict[str, Slo]:
    """Each suite's SLO, read from its file (records keep the suite's name, path and hash, not its SLO): the path
    a run recorded if it is still there, else the shipped suite of that name. A suite with neither still gets
    its pages, without SLO lines."""
    slos = {}
    for name, group in runs.groupby("suite"):
        hashes = set(group["suite_hash"])
        places = [p for p in group["suite_path"].dropna().unique() if Path(p).is_file()] + [name]
        suite = next((s for s in map(_try_suite(suite_loader), places) if s is not None), None)
        if suite is None:
            notes.append(f"suite {name!r}: no suite file found; its pages have no SLO lines")
            continue
        if suite.content_hash not in hashes:
            notes.append(f"suite {name!r}: {suite.path} differs from the file the runs used; SLO lines from it")
        slos[name] = suite.slo
    return slos


def _try_suite(suite_loader: Callable[[str], Suite]) -> Callable[[str], Suite | None]:
    def load(place: str) -> Suite | None:
        try:
            return suite_loader(place)
        except ConfigError:
            return None

    return load


def default_records_dir(db_path: str | Path) -> Path:
    """Where the records of the store at `db_path` are, by default: `runs/` beside it (where `perfci run` puts
    them), else `records/` beside it (a data location: docs/data.md)."""
    parent = Path(db_path).parent
    runs, records = parent / "runs", parent / "records"
    return records if not runs.is_dir() and records.is_dir() else runs


def record_file(records_dir: str | Path, run_id: str, created: str, record_path: str | None = None) -> Path | None:
    """The record of `run_id` inside `records_dir`: `<run_id>.json` there, `YYYY/MM/<run_id>.json` (a data
    location's layout), or the file the store says it was ingested from (`record_path`, for a record saved
    under another name) if that is in the folder. A store is not trusted to name the files published: None for
    an id that is not a run id, and for anything that resolves outside the folder (symlinks included)."""
    if not isinstance(run_id, str) or not re.fullmatch(RUN_ID_PATTERN, run_id):
        return None
    root = Path(records_dir).resolve()
    month = Path(str(created)[:4], str(created)[5:7])
    hint = [Path(record_path)] if isinstance(record_path, str) and record_path else []
    for candidate in (root / f"{run_id}.json", root / month / f"{run_id}.json", *hint):
        real = candidate.resolve()
        if real.is_relative_to(root) and real.is_file():
            return real
    return None


def _copy_record(source: Path, dest: Path) -> bool:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    return True


# --- page data: pure over frames, but for reading the findings and bisect tables -----------------------------


def overview(db: Database, runs: pd.DataFrame, points: pd.DataFrame) -> dict[str, Any]:
    """Engine × hardware rows, model columns: each cell the newest run of that model and its verdict against
    its baseline (the worst series verdict `perfci detect` stored; "not judged" before it ran)."""
    verdicts = store.verdicts_frame(db)
    judged = store.judged_frame(db).set_index("run_id")
    models = points[["run_id", "model"]].drop_duplicates().merge(runs, on="run_id")
    cells = []
    for (engine, hardware, model), group in models.groupby(["engine", "hardware_label", "model"], sort=True):
        run = group.sort_values("created").iloc[-1]
        mine = verdicts[(verdicts["run_id"] == run.run_id) & (verdicts["model"] == model)]["verdict"]
        if run.run_id not in judged.index:
            verdict, baseline = "not judged", None
        else:
            verdict = findings.worst(mine) or judged.loc[run.run_id, "verdict"]
            baseline = judged.loc[run.run_id, "baseline"]
        cells.append({"engine": engine, "hardware": hardware, "model": model, "suite": run.suite,
                      "build": run.build, "run_id": run.run_id, "created": run.created, "verdict": verdict,
                      "baseline": _text(baseline), "regressions": int((mine == "regression").sum()),
                      "series": int(len(mine))})  # fmt: skip
    regressions = [_finding(f) for f in findings.regressions(db, status="open")]
    bisects = stored_bisects.running_frame(db)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for cell in cells:
        rows.setdefault((cell["engine"], cell["hardware"]), {})[cell["model"]] = cell
    return {"models": sorted({c["model"] for c in cells}),
            "rows": [{"engine": e, "hardware": h, "cells": row} for (e, h), row in rows.items()],
            "regressions": regressions, "bisects": _records(bisects), "runs": len(runs),
            "newest_runs": _records(runs.tail(10).iloc[::-1][["run_id", "created", "build", "kernels",
                                                               "hardware_label", "suite", "status"]])}  # fmt: skip


def _finding(f: findings.Finding) -> dict[str, Any]:
    """A finding's row: its change is its representative member's, named, and the trend link opens that series
    (a finding holds series of every metric, each with a change of its own)."""
    shown = f.representative.key if f.members else None
    link = {"engine": f.engine, "hardware": f.hardware_label, "suite": f.suite}
    if shown is not None:
        link |= {"model": shown.model, "workload": shown.workload, "load": shown.load_label, "metric": shown.metric}
    change_of = None
    if shown is not None:
        where = (f"{shown.load_label} start" if shown.workload == STARTUP_WORKLOAD
                 else f"at {shown.load_label}, {shown.workload}")  # fmt: skip
        change_of = f"{metric_label(shown.metric)} ({where})"
    return {"id": f.id, "engine": f.engine, "hardware": f.hardware_label, "suite": f.suite, "last_good": f.last_good,
            "first_bad": f.first_bad, "rel_change": f.rel_change, "change_of": change_of, "confirmed": f.confirmed,
            "members": len(f.members), "metrics": sorted({m.key.metric for m in f.members}), "link": link}  # fmt: skip


def trends(db: Database, obs: pd.DataFrame, runs: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any]]:
    """A manifest of every scope's series (for the filters) and one shard per (scope, metric): the builds in
    version order (with the time of each build's first run), each series' per-build medians, its change points,
    the findings that name it and the bisect culprits for it."""
    first_run = runs.groupby("build")["created"].min()
    members = store.finding_series_frame(db)
    culprits = stored_bisects.culprits_frame(db)
    marks = _by_series(members, ["engine", "hardware_label", "suite", "model", "workload", "load_label", "metric"])
    # A bisect names no model: it searched the suite's workload at one load level.
    bisected = _by_series(culprits, ["engine", "hardware_label", "suite", "workload", "load_label", "metric"])
    scopes, shards = [], {}
    for scope_index, (scope, scope_obs) in enumerate(obs.groupby(list(series.SCOPE), sort=True)):
        history = series.history(scope_obs)
        if history.empty:
            continue
        builds = list(history.columns)
        position = {b: i for i, b in enumerate(builds)}
        metrics = sorted(history.index.get_level_values("metric").unique())
        build_info = [{"label": b, "first_run": first_run.get(b)} for b in builds]
        for metric in metrics:
            rows = history.xs(metric, level="metric")
            lines = []
            for key, values in zip(rows.index, rows.to_numpy(), strict=True):
                _, model, _, _, workload, load_label = key
                found = marks.get((*scope, model, workload, load_label, metric), [])
                culprit_rows = bisected.get((*scope, workload, load_label, metric), [])
                lines.append({"model": model, "workload": workload, "load": load_label,
                              "values": [None if math.isnan(v) else float(v) for v in values],
                              "change_points": _change_points(values, metric),
                              "findings": [{"index": position[m["first_bad"]], "method": m["method"],
                                            "pending": bool(m["pending"]), "status": m["status"],
                                            "rel_change": _number(m["rel_change"])}
                                           for m in found if m["first_bad"] in position],
                              "culprits": _culprits(culprit_rows, scope[0], position)})  # fmt: skip
            shards[f"trends/{scope_index}/{metric}.js"] = {"builds": build_info, "series": lines}
        index = history.index.to_frame(index=False)
        scopes.append({"id": scope_index, "engine": scope[0], "hardware": scope[1], "suite": scope[2],
                       "builds": len(builds), "metrics": metrics,
                       "series": _records(index[["model", "workload", "load_label"]].drop_duplicates()
                                          .rename(columns={"load_label": "load"}))})  # fmt: skip
    return {"scopes": scopes}, shards


def _by_series(frame: pd.DataFrame, key: list[str]) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = {}
    for row in frame.to_dict(orient="records"):
        out.setdefault(tuple(row[k] for k in key), []).append(row)
    return out


def _change_points(values: np.ndarray, metric: str) -> list[dict[str, Any]]:
    found = detect.change_points(values, higher_is_better=higher_is_better(metric))
    return [{"index": c.index, "rel_change": c.rel_change, "verdict": c.verdict, "pending": c.pending} for c in found]


def _culprits(rows: list[dict[str, Any]], engine: str, position: dict[str, int]) -> list[dict[str, Any]]:
    out = []
    for c in rows:
        # A culprit is a build label, a version or a commit.
        culprit = c["culprit"]
        labels = (culprit, series.build_label(engine, culprit, None), series.build_label(engine, None, culprit))
        label = next((x for x in labels if x in position), None)
        if label is not None:
            out.append({"index": position[label], "bisect": int(c["id"]), "culprit": c["culprit"],
                        "subject": _text(c["culprit_subject"]), "url": _text(c["culprit_url"]),
                        "confidence": _number(c["confidence"])})  # fmt: skip
    return out


LEVEL_KEY = ["hardware_label", "suite", "model", "workload", "engine", "build", "load_label"]


def load_levels(points: pd.DataFrame) -> pd.DataFrame:
    """A row per (hardware, suite, model, workload, engine, build, load level) of the points that did not fail:
    the medians over repeats and runs of the achieved rate, goodput, output throughput and latencies, and the
    newest run's time. Ordered by achieved rate."""
    ok = points[points["status"] == "ok"]
    text = ok[["engine", "version", "commit"]].astype(object)
    ok = ok.assign(build=[series.build_label(*r) for r in text.where(text.notna(), None).itertuples(index=False)])
    numeric = [c for c in ("request_rate", "goodput", "output_throughput", *LATENCY_METRICS) if c in ok]
    grouped = ok.groupby(LEVEL_KEY, sort=False)
    levels = grouped[numeric].median().join(grouped["created"].max()).reset_index()
    return levels.sort_values([*LEVEL_KEY[:-1], "request_rate"], kind="stable", ignore_index=True)


def latency_vs_load(levels: pd.DataFrame, slos: dict[str, Slo]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per (hardware, suite, model, workload): the builds (by engine, then newest run) and the suite's SLO; and a
    shard per (group, latency metric) with each build's curve against achieved request rate and its max-goodput
    level, so a store of many builds still gives a light page."""
    groups, shards = [], {}
    for g, (key, group) in enumerate(levels.groupby(LEVEL_KEY[:4], sort=True)):
        curves = sorted(group.groupby(["engine", "build"], sort=False), key=lambda c: (c[0][0], c[1]["created"].max()))
        slo = slos.get(key[1])
        groups.append({"hardware": key[0], "suite": key[1], "model": key[2], "workload": key[3],
                       "builds": [{"build": build, "engine": engine} for (engine, build), _ in curves],
                       "slo": slo.model_dump() if slo else None})  # fmt: skip
        shapes = [{"loads": list(c["load_label"]), "request_rate": _numbers(c["request_rate"]),
                   "max_goodput": _max_goodput(c)} for _, c in curves]  # fmt: skip
        for metric in (m for m in LATENCY_METRICS if m in levels):
            shards[f"load/{g}/{metric}.js"] = [shape | {"values": _numbers(c[metric])}
                                               for shape, (_, c) in zip(shapes, curves, strict=True)]  # fmt: skip
    return {"groups": groups, "metrics": list(LATENCIES), "stats": list(JUDGED_STATS)}, shards


def _max_goodput(levels: pd.DataFrame) -> int | None:
    """Position (in rate order) of the level with the highest goodput; None when no SLO made goodput measured."""
    goodput = levels["goodput"].to_numpy(dtype=float) if "goodput" in levels else np.array([np.nan])
    if not (goodput > 0).any():
        return None
    return int(np.nanargmax(goodput))


def engine_vs_engine(obs: pd.DataFrame) -> dict[str, Any]:
    """Per (hardware, suite): its series (`model · workload · load`) and the newest COMPARED_BUILDS builds of each
    engine with, per metric, one median per series (null where the build did not measure it), so the page plots
    any of these builds against another on the series they share."""
    ok = obs[obs["ok"] & obs["value"].notna() & (obs["workload"] != STARTUP_WORKLOAD)]
    scopes = []
    for (hardware, suite), group in ok.groupby(["hardware_label", "suite"], sort=True):
        newest = [b for _, e in group.groupby("engine", sort=True) for b in series.ordered_builds(e)[-COMPARED_BUILDS:]]
        if not newest:
            continue
        mine = group[group["build"].isin(newest)]
        table = mine.pivot_table(index=["model", "workload", "load_label"], columns=["build", "metric"], values="value",
                                 aggfunc="median")  # fmt: skip
        engine_of = dict(zip(mine["build"], mine["engine"], strict=False))
        metrics = sorted(mine["metric"].unique())
        builds = [{"build": b, "engine": engine_of[b],
                   "values": {m: [_number(v) for v in table[(b, m)]] for m in metrics if (b, m) in table}}
                  for b in newest]  # fmt: skip
        scopes.append({"hardware": hardware, "suite": suite, "metrics": metrics, "builds": builds,
                       "series": [" · ".join(k) for k in table.index]})  # fmt: skip
    return {"scopes": scopes}


def kernels_by_build(runs: pd.DataFrame) -> dict[str, str]:
    """Builds whose runs ran with something in place of the engine's own kernels (`build.kernels`), and what:
    the pages that compare builds say it beside them."""
    if "kernels" not in runs.columns:
        return {}
    marked = runs[runs["kernels"].notna()]
    return {b: ", ".join(sorted(set(g["kernels"]))) for b, g in marked.groupby("build", sort=True)}


def startup(obs: pd.DataFrame) -> dict[str, Any]:
    """Per (engine, hardware): for each cache state, each build's start as stacked phases (medians over its
    starts): the engine's own non-overlapping phases, the time no log line reports (imports, spawning), and the
    first request. They add up to the time to first token."""
    starts = obs[(obs["workload"] == STARTUP_WORKLOAD) & obs["ok"] & obs["value"].notna()]
    out = []
    for (engine, hardware), group in starts.groupby(["engine", "hardware_label"]):
        phases = _stack_phases(engine, set(group["metric"]))
        builds = series.ordered_builds(group)
        caches = []
        for cache, by_cache in group.groupby("load_label"):
            medians = by_cache.groupby(["build", "metric"])["value"].median()
            present = [b for b in builds if b in medians.index.get_level_values("build")]
            stack = {p: [_number(medians.get((b, STARTUP_PREFIX + p))) for b in present] for p in phases}
            caches.append({"cache": cache, "meaning": STATES.get(cache, "as the suite asked (not measured)"),
                           "builds": present, "phases": stack})  # fmt: skip
        out.append({"engine": engine, "hardware": hardware, "phases": phases, "caches": caches})
    return {"stacks": out}


def _stack_phases(engine: str, metrics: set[str]) -> list[str]:
    adapter = engines.REGISTRY.get(engine)
    additive = getattr(adapter, "additive_phases", ())
    names = []
    for alternatives in additive:
        options = (alternatives,) if isinstance(alternatives, str) else alternatives
        names += [o for o in options if STARTUP_PREFIX + o in metrics]
    return [*names, *(p for p in ("unreported", "first_token") if STARTUP_PREFIX + p in metrics)]


def cost(levels: pd.DataFrame, runs: pd.DataFrame, costs: Costs) -> dict[str, Any]:
    """$/million output tokens at the max-goodput load level of each engine's newest COMPARED_BUILDS builds: the
    hardware's hourly price over the output tokens per hour measured there."""
    gpus = runs.assign(gpus=[len(_json(h).get("gpus") or []) for h in runs["hardware"]])
    gpus = gpus.groupby(["build", "hardware_label"])["gpus"].max()
    rows = []
    for (hardware, engine), by_engine in levels.groupby(["hardware_label", "engine"], sort=True):
        newest = by_engine.groupby("build")["created"].max().sort_values().index[-COMPARED_BUILDS:]
        for (suite, model, workload, build), group in by_engine[by_engine["build"].isin(newest)].groupby(
            ["suite", "model", "workload", "build"], sort=True
        ):
            n_gpus = int(gpus.get((build, hardware), 0))
            hourly = costs.hourly(hardware, n_gpus)
            row = {"build": build, "engine": engine, "hardware": hardware, "suite": suite, "model": model,
                   "workload": workload, "gpus": n_gpus, "usd_per_hour": hourly, "load": None, "goodput": None,
                   "output_throughput": None, "usd_per_mtok": None}  # fmt: skip
            best = _max_goodput(group)
            if best is not None:
                level = group.iloc[best]
                throughput = _number(level.get("output_throughput"))
                row |= {"load": level["load_label"], "goodput": _number(level["goodput"]),
                        "output_throughput": throughput}  # fmt: skip
                if hourly is not None and throughput:
                    row["usd_per_mtok"] = hourly / (throughput * 3600) * 1e6
            rows.append(row)
    return {"rows": rows, "prices": costs.usd_per_gpu_hour}


def ab_sessions(db: Database) -> list[dict[str, Any]]:
    """The A/B page: every finished session, newest first, its series worst first (text cells, escaped by jinja)."""
    order = {"FAIL": 0, "INCONCLUSIVE": 1, "IMPROVED": 2, "PASS": 3}
    pct = lambda v: "—" if v is None else f"{v:+.1%}"  # noqa: E731
    shown = []
    for session_id in sessions.sessions_frame(db).query("status == 'done'")["id"]:
        s = ab.load_session(db, int(session_id))
        rows = [{"name": v.name, "change": pct(v.change), "verdict": v.verdict, "reason": v.reason,
                 "ci": "—" if v.low is None else f"[{pct(v.low)}, {pct(v.high)}]",
                 "mde": "—" if v.mde is None else f"±{v.mde:.1%}",
                 "p": "—" if v.p_adjusted is None else f"{v.p_adjusted:.4f}", "n": f"{v.n_baseline}/{v.n_candidate}"}
                for v in sorted(s.judgement.series, key=lambda v: (order.get(v.verdict, 9), v.name))]  # fmt: skip
        shown.append({**{k: getattr(s, k) for k in ("id", "baseline", "candidate", "baseline_build",
                                                     "candidate_build", "suite", "hardware_label", "verdict",
                                                     "reason", "notes")},
                      "blocks": [b for b in s.blocks if re.fullmatch(RUN_ID_PATTERN, str(b["run_id"]))],
                      "series": rows})  # fmt: skip
    return shown


def run_page(run: Any, points: pd.DataFrame, download: bool) -> dict[str, Any]:
    """Everything about one run; `points` are its own."""
    mine = points.sort_values("idx")
    columns = [c for c in mine.columns if c not in ("engine", "version", "commit", "hardware_label", "suite",
                                                     "suite_hash", "created", "run_id", "point_id", "telemetry")]
    present = mine[columns].notna().any()
    columns = [c for c in columns if present[c]]  # fmt: skip
    # The page script fills the table: a template loop over every cell of a 100-point run costs 10x more.
    rows = [[None if v != v else v for v in row] for row in mine[columns].to_numpy(dtype=object).tolist()]  # NaN
    telemetry = [{"idx": int(i), "workload": w, "load": load, "values": _json(t)}
                 for i, w, load, t in zip(mine["idx"], mine["workload"], mine["load_label"], mine["telemetry"],
                                          strict=True)]  # fmt: skip
    return {"run_id": run.run_id, "build": run.build, "engine": run.engine, "version": _text(run.version),
            "commit": _text(run.commit), "source": run.source, "kernels": _text(getattr(run, "kernels", None)),
            "suite": run.suite, "suite_hash": run.suite_hash,
            "hardware_label": run.hardware_label, "created": run.created, "status": run.status,
            "error": _text(run.error), "fingerprint": json.dumps(_json(run.hardware), indent=2),
            "argv": shlex.join(_json(run.engine_argv) or []),
            "environment": json.dumps(_json(run.environment), indent=2),
            "log_tail": _text(run.log_tail) or "", "table": {"columns": columns, "rows": rows}, "telemetry": telemetry,
            "download": f"{run.run_id}.json" if download else None, "record_path": _text(run.record_path)}  # fmt: skip


# --- small conversions ----------------------------------------------------------------------------------------


def _json(text: Any) -> Any:
    return json.loads(text) if isinstance(text, str) and text else {}


def _text(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _cell(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return _number(value)
    if isinstance(value, np.integer):
        return int(value)
    return _text(value)


def _numbers(values: pd.Series) -> list[float | None]:
    """Floats for JSON, None where missing (NaN is not JSON)."""
    return [None if v != v else v for v in values.to_numpy(dtype=float).tolist()]  # v != v: NaN


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _cell(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
