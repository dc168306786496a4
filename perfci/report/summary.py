"""What a report says, read from the store: comparisons (a candidate against its baseline, series by series),
the findings they concern and the bisections that explain them. Markdown is made from these (markdown.py).

Two sources: `of_comparison` (two builds or runs, as `perfci compare`) and `of_latest_detect` (what the newest
`perfci detect` pass judged, with the verdicts it stored).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlite_utils import Database

from perfci import store
from perfci.errors import ConfigError
from perfci.store import bisects as stored_bisects
from perfci.verdicts import findings, series
from perfci.verdicts.findings import VERDICTS, Finding, SeriesVerdict
from perfci.verdicts.series import SCOPE, Selection, SeriesKey


@dataclass(frozen=True)
class Section:
    """One candidate (a build, or one run) against its baseline (None: it had none), every series compared."""

    candidate: Selection
    baseline: Selection | None
    verdicts: tuple[SeriesVerdict, ...]

    def counts(self) -> dict[str, int]:
        return {v: n for v in VERDICTS if (n := sum(s.verdict == v for s in self.verdicts))}


@dataclass(frozen=True)
class Bisect:
    """A row of the `bisects` table (migration 0003), as a report shows it."""

    id: int
    status: str  # running | done | aborted | failed
    outcome: str | None  # culprit | ambiguous | cannot-reproduce | inconclusive
    engine: str
    hardware_label: str | None
    suite: str | None
    workload: str | None
    load_label: str | None
    metric: str
    good: str
    bad: str
    culprit: str | None
    culprit_subject: str | None
    culprit_url: str | None
    confidence: float | None
    rel_change: float | None
    trials: int
    regression_id: int | None
    updated: str
    error: str | None


@dataclass(frozen=True)
class Summary:
    title: str
    sections: tuple[Section, ...]
    findings: tuple[Finding, ...]  # stored findings these sections concern
    bisects: tuple[Bisect, ...]  # of those findings

    @property
    def verdicts(self) -> list[SeriesVerdict]:
        return [v for s in self.sections for v in s.verdicts]

    @property
    def failing(self) -> bool:
        """A regression or a failed series: the commit status and check run fail."""
        return any(v.verdict in ("regression", "failed") for v in self.verdicts)


def of_comparison(db: Database, baseline: str, candidate: str, *, min_effect: float = findings.MIN_EFFECT) -> Summary:
    """`--baseline A --candidate B`: `perfci compare A B`, with the stored findings whose first bad build is B."""
    comparison = findings.compare_builds(db, baseline, candidate, min_effect=min_effect)
    section = Section(comparison.candidate, comparison.baseline, tuple(comparison.verdicts))
    scopes = {(v.key.engine, v.key.hardware_label, v.key.suite) for v in comparison.verdicts}
    found = [f for f in findings.regressions(db)
             if f.first_bad == comparison.candidate.build and (f.engine, f.hardware_label, f.suite) in scopes]
    title = f"{comparison.candidate.label} vs {comparison.baseline.label}"
    return Summary(title, (section,), tuple(found), tuple(bisects(db, [f.id for f in found])))


def of_latest_detect(db: Database) -> Summary:
    """The runs the newest `perfci detect` pass judged, with the verdicts it stored (medians from the store), and
    the findings in their scopes that are open or that pass saw."""
    judged = store.latest_judged_frame(db)
    if judged.empty:
        raise ConfigError("nothing to report: no run has been judged (run `perfci detect`, or give --baseline and "
                          "--candidate)")  # fmt: skip
    stamp = judged["judged_at"].iloc[0]
    stored = store.verdicts_frame(db, judged["run_id"])
    baseline_runs = {row.run_id: tuple(json.loads(row.baseline_runs)) if _text(row.baseline_runs) else ()
                     for row in judged.itertuples()}  # fmt: skip
    obs = series.observations(db, run_ids=dict.fromkeys([*judged["run_id"], *sum(baseline_runs.values(), ())]))
    values = _values(obs)
    kernels = store.read_frame(db, "SELECT run_id, kernels FROM runs").set_index("run_id")["kernels"]
    sections = []
    for run in judged.itertuples(index=False):
        build = series.build_label(run.engine, _text(run.version), _text(run.commit))
        candidate = Selection(f"run {run.run_id[:8]} ({build})", build, (run.run_id,),
                              series.kernels_of(kernels.loc[[run.run_id]].to_frame()))
        base_ids = baseline_runs[run.run_id]
        baseline = None
        if label := _text(run.baseline):
            base_builds = obs.loc[obs["run_id"].isin(base_ids), "build"].unique()
            baseline = Selection(label, base_builds[0] if len(base_builds) == 1 else label, base_ids,
                                 series.kernels_of(kernels.loc[list(base_ids)].to_frame()))
        verdicts = tuple(_verdict(row, run, values, base_ids) for row in stored[stored["run_id"] == run.run_id]
                         .itertuples(index=False))  # fmt: skip
        sections.append(Section(candidate, baseline, verdicts))
    scopes = {tuple(s) for s in judged[list(SCOPE)].itertuples(index=False)}
    found = [f for f in findings.regressions(db)
             if (f.engine, f.hardware_label, f.suite) in scopes and (f.status == "open" or f.last_seen == stamp)]
    title = sections[0].candidate.label if len(sections) == 1 else f"{len(sections)} runs judged"
    if len(sections) == 1 and sections[0].baseline is not None:
        title += f" vs {sections[0].baseline.label}"
    return Summary(title, tuple(sections), tuple(found), tuple(bisects(db, [f.id for f in found])))


def _values(obs: pd.DataFrame) -> dict[tuple[str, ...], list[float]]:
    """(run_id, model, workload, load_label, metric) -> that run's ok values of the series."""
    ok = obs[obs["ok"] & obs["value"].notna()]
    grouped = ok.groupby(["run_id", "model", "workload", "load_label", "metric"], sort=False)["value"]
    return {key: list(values) for key, values in grouped}


def _verdict(row: Any, run: Any, values: dict[tuple[str, ...], list[float]],
             base_ids: tuple[str, ...]) -> SeriesVerdict:  # fmt: skip
    match = (row.model, row.workload, row.load_label, row.metric)
    key = SeriesKey(run.engine, row.model, run.hardware_label, run.suite, row.workload, row.load_label, row.metric)
    base = [v for r in base_ids for v in values.get((r, *match), ())]
    mine = values.get((run.run_id, *match), [])
    return SeriesVerdict(key, row.verdict, _median(base), _median(mine), _num(row.rel_change), _num(row.ci_low),
                         _num(row.ci_high), _num(row.pvalue), int(row.n_baseline), int(row.n_candidate),
                         bool(row.significant))  # fmt: skip


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _num(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None  # SQL NULL may arrive as None or NaN


_BISECT_FIELDS = tuple(Bisect.__dataclass_fields__)


def bisects(db: Database, regression_ids: Iterable[int] | None = None) -> list[Bisect]:
    """Bisections, newest first: all, or those started from the given findings."""
    return [Bisect(*row) for row in stored_bisects.rows(db, _BISECT_FIELDS, regression_ids)]
