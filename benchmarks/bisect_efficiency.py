"""How many trials does a bisect take, how often is its culprit right, and is its stated confidence honest?

Simulated noisy histories: N candidates (the first good, the last bad), a step of `step` at a random
candidate, multiplicative Gaussian noise of `noise` per trial, and optionally a share of candidates that
cannot be built (a trial there raises BuildError: skipped). Each history is bisected by:

- perfci: `perfci.bisect.core.bisect` at its defaults (confidence 0.95), continuous values;
- perfci, noise known: the same given the scenario's noise (`noise=`), as `perfci bisect` does when the
  series has earlier runs stored (it estimates the noise from them);
- plain k: binary search, each probe the median of k trials against the midpoint of the references' medians
  (each reference measured k times first); an unbuildable probe is replaced by its nearest buildable
  neighbour inside the range (as `git bisect skip` does);
- git-bayesect: its `Bisector` (pass/fail; Beta-Jeffreys priors; entropy-minimising probe choice), each trial
  thresholded at the midpoint of the references (3 trials each, counted), stopping at 0.95 like its
  `run --confidence 0.95`; an unbuildable candidate is recorded as a skip (prior zeroed).

A result is correct when the culprit is the true first bad candidate. When the true culprit cannot be built,
no method can name it: perfci then reports an ambiguous range, counted apart ("ambiguous ranges holding the
culprit"); the pass/fail methods name a neighbour (wrong). Confidence is a named culprit's posterior (0 when
perfci names none). Trials are capped at 100 (perfci) and 400 (git-bayesect). Calibration: histories are binned by
stated confidence and each bin's hit rate printed beside its mean confidence.

    .venv/bin/python benchmarks/bisect_efficiency.py            # 300 histories per scenario, ~35 minutes
    .venv/bin/python benchmarks/bisect_efficiency.py --runs 50  # ~6 minutes

Needs the bench extra for git-bayesect: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np
from git_bayesect import Bisector

from perfci.bisect import core as bisect
from perfci.errors import BuildError

Measure = Callable[[int], float]


@dataclass(frozen=True)
class Scenario:
    n: int
    step: float
    noise: float
    unbuildable: float = 0.0

    def __str__(self) -> str:
        skip = f", {self.unbuildable:.0%} unbuildable" if self.unbuildable else ""
        return f"N={self.n} step {self.step:.0%} noise {self.noise:.0%}{skip}"


@dataclass(frozen=True)
class Outcome:
    correct: bool
    trials: int
    confidence: float | None
    narrowed: bool = False  # no culprit named, but the reported ambiguous range holds the true one


def history(s: Scenario, seed: int) -> tuple[int, Measure, set[int]]:
    rng = np.random.default_rng(seed)
    culprit = int(rng.integers(1, s.n))
    broken = {i for i in range(1, s.n - 1) if rng.random() < s.unbuildable}

    def measure(i: int) -> float:
        if i in broken:
            raise BuildError(f"candidate {i} does not build")
        return 100.0 * (1 + s.step * (i >= culprit)) * math.exp(rng.normal(0, s.noise))

    return culprit, measure, broken


def run_perfci(n: int, measure: Measure, truth: int, noise: float | None = None) -> Outcome:
    result = bisect.bisect(list(range(n)), measure, higher_is_better=False, noise=noise)
    narrowed = result.outcome == "ambiguous" and result.suspects[0] <= truth <= result.suspects[1]
    return Outcome(result.culprit == truth, result.trials, result.confidence if result.culprit is not None else 0.0,
                   narrowed)  # fmt: skip


def counted(measure: Measure) -> tuple[Measure, list[int]]:
    calls: list[int] = []

    def wrapped(i: int) -> float:
        calls.append(i)
        return measure(i)

    return wrapped, calls


def run_plain(n: int, measure: Measure, truth: int, k: int) -> Outcome:
    measure, calls = counted(measure)
    good = float(np.median([measure(0) for _ in range(k)]))
    bad = float(np.median([measure(n - 1) for _ in range(k)]))
    mid, worse_is_higher = (good + bad) / 2, bad > good
    lo, hi, broken = 0, n - 1, set()
    while hi - lo > 1:
        probe = _buildable_middle(lo, hi, broken)
        if probe is None:
            break
        try:
            value = float(np.median([measure(probe) for _ in range(k)]))
        except BuildError:
            broken.add(probe)
            continue
        if (value > mid) == worse_is_higher:
            hi = probe
        else:
            lo = probe
    return Outcome(hi == truth and hi - lo == 1, len(calls), None)


def _buildable_middle(lo: int, hi: int, broken: set[int]) -> int | None:
    middle = (lo + hi) // 2
    for offset in range(hi - lo):
        for probe in (middle - offset, middle + offset):
            if lo < probe < hi and probe not in broken:
                return probe
    return None


def run_bayesect(n: int, measure: Measure, truth: int, refs: int = 3) -> Outcome:
    measure, calls = counted(measure)
    good = float(np.median([measure(0) for _ in range(refs)]))
    bad = float(np.median([measure(n - 1) for _ in range(refs)]))
    mid, worse_is_higher = (good + bad) / 2, bad > good
    # git-bayesect's index 0 is the newest commit; candidate c is index n - 1 - c. Its answer B is the oldest
    # index that fails, i.e. candidate n - 1 - B is the first bad one. The references are in its history too.
    bisector = Bisector(np.ones(n))
    for _ in range(refs):
        bisector.record(0, True)
        bisector.record(n - 1, False)
    while bisector.distribution.max() < 0.95 and len(calls) < 400:
        index = bisector.select()
        try:
            value = measure(n - 1 - index)
        except BuildError:
            bisector.record(index, None)
            continue
        bisector.record(index, (value > mid) == worse_is_higher)
    culprit = n - 1 - int(np.argmax(bisector.distribution))
    return Outcome(culprit == truth, len(calls), float(bisector.distribution.max()))


METHODS: dict[str, Callable[[Scenario, Measure, int], Outcome]] = {
    "perfci": lambda s, m, t: run_perfci(s.n, m, t),
    "perfci, noise known": lambda s, m, t: run_perfci(s.n, m, t, noise=s.noise),
    "plain k=3": lambda s, m, t: run_plain(s.n, m, t, 3),
    "plain k=5": lambda s, m, t: run_plain(s.n, m, t, 5),
    "git-bayesect": lambda s, m, t: run_bayesect(s.n, m, t),
}

SCENARIOS = [
    Scenario(64, 0.05, 0.02),
    Scenario(64, 0.05, 0.01),
    Scenario(64, 0.05, 0.03),
    Scenario(64, 0.10, 0.02),
    Scenario(64, 0.02, 0.02),
    Scenario(64, 0.05, 0.02, unbuildable=0.1),
    Scenario(1024, 0.05, 0.02),
    Scenario(1024, 0.10, 0.02),
]


def calibration(outcomes: list[Outcome]) -> str:
    """Hit rate per stated-confidence bin: 'confidence -> hit rate (histories)'."""
    bins = [(0.0, 0.9), (0.9, 0.95), (0.95, 0.99), (0.99, 1.01)]
    parts = []
    for low, high in bins:
        chosen = [o for o in outcomes if o.confidence is not None and low <= o.confidence < high]
        if chosen:
            stated = np.mean([o.confidence for o in chosen])
            hit = np.mean([o.correct for o in chosen])
            parts.append(f"{stated:.3f}->{hit:.3f} ({len(chosen)})")
    return "  ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="histories per scenario")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"# bisect efficiency · {args.runs} histories per scenario · seed {args.seed} · python "
          f"{platform.python_version()} · git-bayesect {version('git-bayesect')}\n")  # fmt: skip
    print("| scenario | method | correct | trials (mean) | trials (p90) | stated confidence | confidence - hit rate |")
    print("|---|---|---|---|---|---|---|")
    for scenario in SCENARIOS:
        for name, method in METHODS.items():
            started = time.perf_counter()
            outcomes = []
            for run in range(args.runs):
                truth, measure, _ = history(scenario, args.seed * 1_000_003 + run)
                outcomes.append(method(scenario, measure, truth))
            hit = np.mean([o.correct for o in outcomes])
            trials = np.array([o.trials for o in outcomes])
            stated = [o.confidence for o in outcomes if o.confidence is not None]
            conf = f"{np.mean(stated):.3f}" if stated else "—"
            gap = f"{np.mean(stated) - hit:+.3f}" if stated else "—"
            print(f"| {scenario} | {name} | {hit:.1%} | {trials.mean():.1f} | {np.percentile(trials, 90):.0f} | "
                  f"{conf} | {gap} |", flush=True)  # fmt: skip
            if name.startswith("perfci") and stated:
                narrowed = sum(o.narrowed for o in outcomes)
                seconds = time.perf_counter() - started
                print(f"|  | {name} calibration by bin: {calibration(outcomes)}; ambiguous ranges holding the culprit "
                      f"(an unbuildable one): {narrowed} | | | | | | {seconds:.0f} s |")  # fmt: skip


if __name__ == "__main__":
    main()
