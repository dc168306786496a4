"""Noise and minimum detectable effect (MDE) of every series of a stored history, as `perfci detect` judges it.

    python benchmarks/history_mde.py --db history.db [--suite cpu-history] [--metric GLOB ...]

`perfci detect` compares each run's repeats with the previous release's (Mann-Whitney at alpha 0.01, then
Benjamini-Hochberg at q 0.05 over every test of the pass). For each series this prints:
- `noise`: the standard deviation of log values among one run's repeats, pooled over the runs (relative,
  e.g. 0.12 = 12%) — the scatter within one engine start, which is all a release-to-release test sees;
- `start-to-start`: the standard deviation of log per-run medians around the series' median, for series with
  one run per build this mixes real release changes with start-to-start noise (an upper bound);
- `mde@0.01`: the smallest shift `detect.compare` calls significant with 80% power at this noise and the
  series' repeats per side (simulated with the real `detect.compare` on log-normal values);
- `mde@bh1`: the same at alpha = q / m, what a lone finding needs to survive Benjamini-Hochberg in a family of
  m tests (m = series x judged runs).
Nothing is measured: it reads the store. The MDE is scale-free in the noise, so it is simulated once per
(repeats, alpha) in noise units and scaled by each series' noise.
"""

from __future__ import annotations

import argparse
import fnmatch
import math

import numpy as np

from perfci.store import open_db
from perfci.verdicts import detect, series

POWER = 0.8
SIMS = 400


def mde_units(n: int, alpha: float, *, rng: np.random.Generator) -> float:
    """The shift, in noise standard deviations of log values, that compare detects with POWER at n vs n."""
    for d in np.arange(0.1, 12.0, 0.1):
        hits = 0
        for _ in range(SIMS):
            a = np.exp(rng.normal(0, 1, n))
            b = np.exp(rng.normal(d, 1, n))
            verdict = detect.compare(a, b, higher_is_better=False, alpha=alpha, min_effect=1e-6).verdict
            hits += verdict == "regression"
        if hits >= POWER * SIMS:
            return float(d)
    return math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--suite", default="cpu-history")
    parser.add_argument("--metric", action="append", default=[], help="metric globs (default: all)")
    args = parser.parse_args()
    obs = series.observations(open_db(args.db, readonly=True))
    obs = obs[(obs["suite"] == args.suite) & obs["ok"] & obs["value"].notna() & (obs["value"] > 0)]
    if args.metric:
        obs = obs[obs["metric"].map(lambda m: any(fnmatch.fnmatchcase(m, g) for g in args.metric))]
    obs = obs.assign(log=np.log(obs["value"].astype(float)))
    runs = obs["run_id"].nunique()
    keys = ["workload", "load_label", "metric"]
    n_series = obs.groupby(keys).ngroups
    rng = np.random.default_rng(0)
    units: dict[tuple[int, float], float] = {}
    alpha_bh1 = 0.05 / max(1, n_series * max(1, runs - 1))
    print(f"{runs} runs, {n_series} series; a lone finding needs p <= {alpha_bh1:.2g} (BH, q 0.05)\n")
    print("| workload | load | metric | repeats | noise | start-to-start | mde@0.01 | mde@bh1 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for (workload, load, metric), g in obs.groupby(keys):
        per_run = g.groupby("run_id")["log"]
        n = int(per_run.size().median())
        resid = g["log"] - per_run.transform("mean")
        dof = len(g) - per_run.ngroups
        noise = float(np.sqrt((resid**2).sum() / dof)) if dof > 0 else math.nan
        medians = per_run.median()
        between = float(np.std(medians - medians.median(), ddof=1)) if len(medians) > 1 else math.nan
        cells = []
        for alpha in (0.01, alpha_bh1):
            if n < 2 or not math.isfinite(noise):
                cells.append("—")
                continue
            key = (n, alpha)
            if key not in units:
                units[key] = mde_units(n, alpha, rng=rng)
            cells.append(f"{math.expm1(units[key] * noise):.1%}")
        print(f"| {workload} | {load} | {metric} | {n} | {noise:.1%} | {between:.1%} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
