"""Regression verdicts: two samples compared, change points in a series, false discoveries controlled. Pure.

The statistics and why (docs/detection.md):
- `compare`: Mann-Whitney's rank test for the p-value and the Hodges-Lehmann shift with its distribution-free
  confidence interval (the test inverted) for the size of the change, on log values when all are positive.
  Ranks make the verdict indifferent to heavy tails and outliers; no random numbers are drawn.
- `change_points`: spikes are replaced by a running median (so single outliers never start a new level),
  then binary segmentation with the two-sample t statistic maximised over splits that leave `min_size` builds
  on each side, and where no split is significant, over intervals (a level that came and went). The p-value
  of a maximum comes from Siegmund's approximation for the maximum of a standardised change-point process,
  so it holds its level for any series length and stays accurate far into the tail (Benjamini-Hochberg over
  many series needs small p-values to be right, not floored at 1/permutations). Each change point is then
  placed and tested again between its neighbours; those no longer significant, or whose levels differ by
  less than `min_effect`, are merged away.
- `benjamini_hochberg`: the step-up procedure over a family of p-values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from perfci.errors import ConfigError

VerdictName = Literal["regression", "improvement", "unchanged", "inconclusive"]

MIN_EFFECT = 0.05  # the smallest relative change `compare` calls a regression or improvement, by default
_NORMAL = NormalDist()
_EXACT_MAX_COUNT = 2**53  # Mann-Whitney's null is counted exactly while C(n + m, m) stays below this (floats)
_EXACT_MAX_CELLS = 1 << 16  # ... and n * m up to this (the null's size; beyond, the normal approximation)
_MAX_PAIRS = 1 << 20  # pairwise differences listed in memory (8 MiB) before order statistics bisect instead
_SPIKE_WINDOW = 5  # running-median window for despiking: two adjacent outliers are still a minority
_SPIKE_SIGMAS = 4.0  # a value this many noise scales from its running median is a spike
_INTERVAL_SHARE = 0.1  # of alpha, for the scan over intervals (the rest for single splits): Bonferroni
_SCAN_CELLS = 1 << 18  # (start, end) pairs the interval scan holds at once
_LOCATE_WINDOW = 3  # builds either side of a reported change point that should hold the true one (_locate)


@dataclass(frozen=True)
class Verdict:
    """One metric, candidate against baseline. `rel_change` is the candidate's shift relative to the baseline
    centre (+0.12: 12% higher), `ci_low`..`ci_high` its (1 - alpha) confidence interval, `pvalue` the
    two-sided Mann-Whitney p-value. NaN estimates where a side has no finite value."""

    verdict: VerdictName
    rel_change: float
    ci_low: float
    ci_high: float
    pvalue: float
    n_baseline: int  # finite values used (NaN and inf are dropped)
    n_candidate: int
    # Candidate values the test needs before any p-value can reach alpha against this baseline, when the
    # candidate has fewer (min_candidates): the verdict is then "inconclusive" whatever the values are.
    needed: int | None = None

    @property
    def cannot_decide(self) -> str | None:
        return cannot_decide(self.n_candidate, self.needed)


@dataclass(frozen=True)
class ChangePoint:
    """A new level in a series. `index` is the first build of the new level (in the series as given, missing
    builds included); `before`/`after` are the levels either side (means once spikes are replaced);
    `rel_change` = after / before - 1; `pvalue` is for a change anywhere between the neighbouring change
    points; `pending` marks a new level seen only at the newest builds, fewer than `confirm` of them."""

    index: int
    before: float
    after: float
    rel_change: float
    pvalue: float
    pending: bool
    verdict: Literal["regression", "improvement"]  # the change seen in the metric's direction


def compare(baseline: Sequence[float], candidate: Sequence[float], *, higher_is_better: bool,
            min_effect: float = MIN_EFFECT, alpha: float = 0.01) -> Verdict:  # fmt: skip
    """Judge `candidate` against `baseline` (repeats or per-request values of one metric).

    regression / improvement: the difference is significant (p <= alpha) and the confidence interval reaches
    at least `min_effect` in that direction (a real change that may be as large as the smallest one that
    matters; `rel_change` says how large it most likely is). unchanged: the interval lies within
    +-min_effect, significant or not (a real but negligible change is unchanged). inconclusive: neither, or
    fewer than two finite values on a side. When the candidate has fewer values than the test needs to
    ever reach alpha against this baseline (`min_candidates`), `needed` says how many it needs.
    Deterministic: no random numbers are drawn.
    """
    _check_level(alpha, "alpha")
    _check_effect(min_effect)
    b, c = _finite(baseline, "baseline"), _finite(candidate, "candidate")
    least = min_candidates(b.size, alpha=alpha) if b.size else None
    needed = least if least is not None and c.size < least else None
    if b.size == 0 or c.size == 0:
        return Verdict("inconclusive", math.nan, math.nan, math.nan, 1.0, b.size, c.size, needed)

    centre = float(np.median(b))
    if (b > 0).all() and (c > 0).all():
        # Multiplicative noise (latency, throughput): shift the logs. Dividing by the centre first keeps the
        # result exactly scale-free for powers of two, not just up to rounding.
        xb, xc = np.log(b / centre), np.log(c / centre)
        to_rel = np.expm1
    else:
        scale = abs(centre) or 1.0
        xb, xc = (b - centre) / scale, (c - centre) / scale
        to_rel = (lambda d: d) if centre else _from_zero  # relative to a centre of 0: 0 or +-inf

    xb.sort()
    xc.sort()
    pvalue = _mann_whitney_pvalue(xb, xc)
    nm = xb.size * xc.size
    k = _rank_bound(xb.size, xc.size, alpha)
    mid_low, mid_high, low, high = _pairwise_differences(xb, xc, [(nm + 1) // 2, nm // 2 + 1, k, nm + 1 - k])
    shift = (mid_low + mid_high) / 2  # Hodges-Lehmann: the median of all pairwise differences
    if k < 1:
        low, high = -math.inf, math.inf
    rel, ci_low, ci_high = (float(to_rel(v)) for v in (shift, low, high))

    worse = rel < 0 if higher_is_better else rel > 0
    reaches = ci_high >= min_effect if rel > 0 else ci_low <= -min_effect
    if b.size < 2 or c.size < 2:
        verdict: VerdictName = "inconclusive"
    elif pvalue <= alpha and rel != 0 and reaches:
        verdict = "regression" if worse else "improvement"
    elif -min_effect < ci_low and ci_high < min_effect:
        verdict = "unchanged"
    else:
        verdict = "inconclusive"
    if verdict != "inconclusive":
        needed = None  # tied values (the normal approximation) can go a little beyond the tie-free extreme
    return Verdict(verdict, rel, ci_low, ci_high, pvalue, b.size, c.size, needed)


def cannot_decide(n_candidate: int, needed: int | None) -> str | None:
    """The note for a candidate of `n_candidate` values that can never be significant, as in "cannot decide:
    1 value; need ≥ 5" (`needed` from `min_candidates`, set only then); None otherwise."""
    if needed is None:
        return None
    return f"cannot decide: {n_candidate} value{'s' * (n_candidate != 1)}; need ≥ {needed}"


def min_candidates(n_baseline: int, *, alpha: float = 0.01) -> int | None:
    """The fewest candidate values with which `compare` can reach p <= alpha against `n_baseline` values;
    None when no number can (fewer than two baseline values).

    The most extreme outcome, every candidate value beyond every baseline value, has the two-sided
    Mann-Whitney p-value 2 / C(n + m, m) (one arrangement of C(n + m, m), either side) where the null is
    counted exactly, and 2 Phi(-z) with z = (nm/2 - 1/2) / sqrt(nm (n + m + 1) / 12) under the normal
    approximation. `compare` also wants two values on each side. So M is the smallest m >= 2 with
    C(n + m, m) >= 2 / alpha: at alpha = 0.01, n = 5 needs m = 5 (2/252), n = 9 needs 3, n = 19 needs 2.
    For values without ties: tied values take the normal approximation with the tie correction, whose extreme
    can be a little smaller (5 equal values against 4 equal ones: p = 0.007), so `compare` sets `needed`
    only on an inconclusive verdict."""
    _check_level(alpha, "alpha")
    if n_baseline < 2:
        return None
    for m in range(2, 1 << 16):
        if _smallest_pvalue(n_baseline, m) <= alpha:
            return m
    return None


def _smallest_pvalue(n: int, m: int) -> float:
    """The p-value of the most extreme outcome of Mann-Whitney's test with n and m values, no ties."""
    if _exact(n, m):
        return min(1.0, 2 / math.comb(n + m, m))
    z = (n * m / 2 - 0.5) / math.sqrt(n * m * (n + m + 1) / 12)
    return 2 * _NORMAL.cdf(-z)


def _exact(n: int, m: int) -> bool:
    """Whether Mann-Whitney's null is counted exactly for these sizes: the counts stay exact in floats and
    the table small. A small side with a large one (one run against many) is exact however large the other
    is, where the normal approximation would be far off in the tail."""
    return n * m <= _EXACT_MAX_CELLS and math.comb(n + m, min(n, m)) < _EXACT_MAX_COUNT


def change_points(values: Sequence[float], *, higher_is_better: bool, alpha: float = 0.005,
                  min_effect: float = 0.02, min_size: int = 4, confirm: int = 10) -> list[ChangePoint]:  # fmt: skip
    """Change points of one series in build order; NaN or inf marks a missing build (skipped, indices kept).

    A change point needs `min_size` builds on each side (fewer than 2 * min_size builds: none), a p-value at
    most `alpha` for a change between its neighbouring change points, and levels that differ by at least
    `min_effect` relative to the level before. With no change at all, a series shows any change point with
    probability about `alpha`. One at the end with fewer than `confirm` builds after it is `pending`. An
    outlier (or two adjacent ones) is replaced by its neighbours' median before the search; one that is not
    cannot hold a level of `min_size` builds on its own. Deterministic: no random numbers are drawn.
    """
    _check_level(alpha, "alpha")
    _check_effect(min_effect)
    if min_size < 2:
        raise ConfigError(f"min_size must be at least 2 builds, got {min_size}")
    if confirm < min_size:
        raise ConfigError(f"confirm ({confirm}) must be at least min_size ({min_size})")
    raw = np.asarray(_numbers(values, "values"), dtype=float)
    kept = np.flatnonzero(np.isfinite(raw))
    x = raw[kept]
    if x.size < 2 * min_size or x.min() == x.max():
        return []
    y = _despiked(x)
    splits = _segment(y, min_size, alpha)
    splits, pvalues = _prune(y, splits, min_size, alpha, min_effect)

    found = []
    bounds = [0, *splits, x.size]
    for i, (split, pvalue) in enumerate(zip(splits, pvalues, strict=True)):
        before, after = float(y[bounds[i] : split].mean()), float(y[split : bounds[i + 2]].mean())
        rel = _relative(after, before)
        pending = i == len(splits) - 1 and x.size - split < confirm
        worse = rel < 0 if higher_is_better else rel > 0
        found.append(ChangePoint(int(kept[split]), before, after, rel, pvalue, pending,
                                 "regression" if worse else "improvement"))  # fmt: skip
    return found


def benjamini_hochberg(pvalues: Sequence[float], *, q: float = 0.05) -> list[bool]:
    """Which hypotheses are rejected with the false discovery rate held at `q` (the step-up procedure:
    reject the k smallest p-values, k the largest with p_(k) <= k q / m; equivalently, those whose
    Benjamini-Hochberg adjusted p-value is at most q). NaN counts as a test never rejected."""
    from scipy.stats import false_discovery_control

    _check_level(q, "q")
    p = np.asarray(_numbers(pvalues, "pvalues"), dtype=float)
    if p.size == 0:
        return []
    if ((p < 0) | (p > 1)).any():
        raise ConfigError(f"p-values must lie in [0, 1], got {p[(p < 0) | (p > 1)][:3].tolist()}")
    p = np.where(np.isnan(p), 1.0, p)
    return (false_discovery_control(p) <= q).tolist()


# --- compare: Mann-Whitney and Hodges-Lehmann ------------------------------------------------------------------


def _mann_whitney_pvalue(b: np.ndarray, c: np.ndarray) -> float:
    """Two-sided p-value of Mann-Whitney's U (b, c sorted): exact without ties on small samples, else the
    normal approximation with the tie and continuity corrections."""
    n, m = b.size, c.size
    less = np.searchsorted(b, c, side="left")
    ties = np.searchsorted(b, c, side="right") - less
    u = float(less.sum() + ties.sum() / 2)  # pairs where the candidate is higher; ties count half
    pooled = np.concatenate([b, c])
    _, counts = np.unique(pooled, return_counts=True)
    if counts.size == 1:
        return 1.0  # every value identical: no evidence of any difference
    if counts.max() == 1 and _exact(n, m):
        cdf = _mann_whitney_cdf(n, m)
        low = cdf[int(u)]
        high = 1 - (cdf[int(u) - 1] if u >= 1 else 0.0)
        return float(min(1.0, 2 * min(low, high)))
    mean = n * m / 2
    var = n * m / 12 * ((n + m + 1) - (counts**3 - counts).sum() / ((n + m) * (n + m - 1)))
    z = max(0.0, abs(u - mean) - 0.5) / math.sqrt(var)
    return 2 * _NORMAL.cdf(-z)


@functools.lru_cache(maxsize=64)
def _mann_whitney_cdf(n: int, m: int) -> np.ndarray:
    """P(U <= u) for u = 0 .. n*m with no difference and no ties (read-only; cached: sizes repeat)."""
    counts = _mann_whitney_null(max(n, m), min(n, m))  # the same distribution; the loop runs over the smaller
    cdf = np.cumsum(counts) / counts.sum()
    cdf.flags.writeable = False
    return cdf


def _mann_whitney_null(n: int, m: int) -> np.ndarray:
    """Counts of U = 0 .. n*m over all arrangements without ties: the coefficients of the Gaussian binomial
    prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i), as power series truncated at degree n*m."""
    size = n * m + 1
    poly = np.zeros(size)
    poly[0] = 1.0
    for i in range(1, m + 1):
        if n + i < size:
            poly[n + i :] -= poly[: size - n - i].copy()
        for r in range(i):  # divide by (1 - q^i): running sums along each residue class mod i
            poly[r::i] = np.cumsum(poly[r::i])
    return poly


def _rank_bound(n: int, m: int, alpha: float) -> int:
    """k such that the k-th smallest and k-th largest pairwise difference bound a (1 - alpha) interval for
    the shift (Moses); 0 when the samples are too small for any interval at that level."""
    if _exact(n, m):
        return int(np.searchsorted(_mann_whitney_cdf(n, m), alpha / 2, side="right"))  # P(U <= k - 1) <= alpha / 2
    z = -_NORMAL.inv_cdf(alpha / 2)
    return max(0, math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12)))


def _pairwise_differences(b: np.ndarray, c: np.ndarray, ranks: list[int]) -> list[float]:
    """The k-th smallest (1-based, clamped to 1..n*m) of the n*m differences c[j] - b[i] for each k in
    `ranks` (b, c sorted). Up to _MAX_PAIRS pairs are listed; beyond, each is found by bisection."""
    nm = b.size * c.size
    ranks = [min(max(k, 1), nm) for k in ranks]
    if nm <= _MAX_PAIRS:
        pairs = np.partition(np.subtract.outer(c, b).ravel(), [k - 1 for k in ranks])
        return [float(pairs[k - 1]) for k in ranks]
    return [_kth_difference(b, c, k) for k in ranks]


def _kth_difference(b: np.ndarray, c: np.ndarray, k: int) -> float:
    """The k-th smallest (1-based) of the differences c[j] - b[i] (b, c sorted), by bisection on the value:
    per-request samples of thousands would otherwise list millions of pairs."""
    lo, hi = c[0] - b[-1], c[-1] - b[0]
    if k <= 1:
        return float(lo)

    def at_most(t: float) -> int:  # how many differences are <= t
        return int((b.size - np.searchsorted(b, c - t, side="left")).sum())

    while True:  # invariant: fewer than k differences <= lo, at least k <= hi
        mid = lo + (hi - lo) / 2
        if not lo < mid < hi:
            break
        if at_most(mid) >= k:
            hi = mid
        else:
            lo = mid
    # hi is now within rounding of the answer: return the pairwise difference itself.
    i = np.searchsorted(b, c - hi)
    near = np.concatenate([c - b[np.minimum(i, b.size - 1)], c - b[np.maximum(i - 1, 0)]])
    return float(near[np.argmin(np.abs(near - hi))])


# --- change points: despiking, binary segmentation, pruning -----------------------------------------------------


def _despiked(x: np.ndarray) -> np.ndarray:
    """x with every value further than _SPIKE_SIGMAS noise scales from the median of its neighbourhood
    replaced by that median. The noise scale comes from first differences, which a step barely moves.
    Near the ends the window is shifted inwards, not cut short, so two outliers at the newest builds are
    still a minority of it."""
    if x.size < _SPIKE_WINDOW:
        local = np.full_like(x, np.median(x))
    else:
        medians = np.median(sliding_window_view(x, _SPIKE_WINDOW), axis=1)
        local = medians[np.clip(np.arange(x.size) - _SPIKE_WINDOW // 2, 0, medians.size - 1)]
    return np.where(np.abs(x - local) > _SPIKE_SIGMAS * _noise_scale(x), local, x)


def _noise_scale(x: np.ndarray) -> float:
    """Standard deviation of the noise, robustly: the MAD of first differences (a step adds one large
    difference, an outlier two); their mean absolute value when most differences are zero (quantised data)."""
    d = np.abs(np.diff(x))
    mad = float(np.median(d)) / (_NORMAL.inv_cdf(0.75) * math.sqrt(2))
    return mad if mad > 0 else float(d.mean()) * math.sqrt(math.pi) / 2


def _segment(y: np.ndarray, min_size: int, alpha: float) -> list[int]:
    """Binary segmentation: split where the t statistic is largest while that is significant. A piece with
    no significant split may still hold a level that came and went (a regression fixed a few builds later,
    which one split barely sees): then it is cut around the interval that differs most from the rest, if
    that is significant (circular binary segmentation's scan)."""
    splits, todo = [], [(0, y.size)]
    while todo:
        a, b = todo.pop()
        k, pvalue = _best_split(y[a:b], min_size)
        if pvalue <= alpha * (1 - _INTERVAL_SHARE):
            splits.append(a + k)
            todo += [(a, a + k), (a + k, b)]
            continue
        i, j, pvalue = _best_interval(y[a:b], min_size)
        if pvalue <= alpha * _INTERVAL_SHARE:
            splits += [a + i, a + j]
            todo += [(a, a + i), (a + i, a + j), (a + j, b)]
    return sorted(splits)


def _prune(y: np.ndarray, splits: list[int], min_size: int, alpha: float,
           min_effect: float) -> tuple[list[int], list[float]]:  # fmt: skip
    """Relocate each change point between its neighbours and test it there; drop the weakest that fails
    (least significant first, then the smallest change) until all pass. Returns splits and their p-values."""
    while True:
        bounds = [0, *splits, y.size]
        pvalues = []
        for i in range(len(splits)):
            k, pvalue = _best_split(y[bounds[i] : bounds[i + 2]], min_size)
            bounds[i + 1] = bounds[i] + k
            pvalues.append(pvalue)
        splits = bounds[1:-1]
        if not splits:
            return [], []
        weakest = int(np.argmax(pvalues))
        if pvalues[weakest] > alpha:
            del splits[weakest]
            continue
        changes = [abs(_relative(float(y[s:e].mean()), float(y[a:s].mean())))
                   for a, s, e in zip(bounds, bounds[1:], bounds[2:], strict=False)]  # fmt: skip
        weakest = int(np.argmin(changes))
        if changes[weakest] >= min_effect:
            return splits, pvalues
        del splits[weakest]


def _best_split(y: np.ndarray, min_size: int) -> tuple[int, float]:
    """The split k (size of the left part) maximising the two-sample t statistic over k in [min_size,
    n - min_size], and the p-value of that maximum under no change. (0, 1.0) when no split fits."""
    n = y.size
    if n < 2 * min_size or y.min() == y.max():
        return 0, 1.0
    z = y - np.median(y)  # centred so the sums of squares below do not cancel
    s, q = np.concatenate([[0.0], np.cumsum(z)]), np.concatenate([[0.0], np.cumsum(z * z)])
    k = np.arange(min_size, n - min_size + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t, within = _two_sample_t(s, q, k, np.full_like(k, n), n - k)
    best = int(np.argmax(t))
    return _locate(k, within, n), _max_t_pvalue(float(t[best]), n, min_size)


def _best_interval(y: np.ndarray, min_size: int) -> tuple[int, int, float]:
    """The interval [i, j) with at least min_size builds in it and on either side of it whose mean differs
    most from the rest's by the two-sample t statistic, and the p-value of that maximum under no change.
    (0, 0, 1.0) when none fits. Computed over blocks of start positions to bound memory on long series."""
    n = y.size
    if n < 3 * min_size or y.min() == y.max():
        return 0, 0, 1.0
    z = y - np.median(y)
    s, q = np.concatenate([[0.0], np.cumsum(z)]), np.concatenate([[0.0], np.cumsum(z * z)])
    best_t, best = -1.0, (0, 0)
    ends = np.arange(n + 1)[None, :]
    rows = max(1, _SCAN_CELLS // n)
    for first in range(min_size, n - 2 * min_size + 1, rows):
        starts = np.arange(first, min(first + rows, n - 2 * min_size + 1))[:, None]
        size = ends - starts
        fits = (size >= min_size) & (ends <= n - min_size)
        inside = np.where(fits, size, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t, _ = _two_sample_t(s, q, starts, np.where(fits, ends, starts + 1), inside)
        t = np.where(fits, t, -1.0)
        at = np.unravel_index(int(np.argmax(t)), t.shape)
        if t[at] > best_t:
            best_t, best = float(t[at]), (int(starts[at[0], 0]), int(ends[0, at[1]]))
    return best[0], best[1], _max_interval_pvalue(best_t, n, min_size)


def _two_sample_t(s: np.ndarray, q: np.ndarray, i: np.ndarray, j: np.ndarray,
                  inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """|t| of the values in [i, j) against all the others (pooled variance), from prefix sums s and q of the
    values and their squares (with a leading 0); also the within-groups sum of squares."""
    n = s.size - 1
    sum_in, sq_in = s[j] - s[i], q[j] - q[i]
    sum_out, outside = s[n] - sum_in, n - inside
    within = np.maximum((sq_in - sum_in**2 / inside) + (q[n] - sq_in - sum_out**2 / outside), 0.0)
    diff = sum_in / inside - sum_out / outside
    se = np.sqrt(within / (n - 2) * (1 / inside + 1 / outside))
    t = np.where(se > 0, np.abs(diff) / se, np.where(diff != 0, np.inf, 0.0))
    return t, within


def _locate(k: np.ndarray, within: np.ndarray, n: int) -> int:
    """Where the level changes: the split k that maximises P(change within 1 build of k) + P(change within
    _LOCATE_WINDOW builds of k) under the posterior (flat priors on the two levels and on log sigma:
    p(k) ~ (k (n-k))^-1/2 within_k^-(n-2)/2). Bisect and A/B confirmation start from the first bad build,
    so the +-1 mass rewards the exact build; the wider mass keeps weak steps near the truth where the
    posterior is too flat for one build to stand out. (Against the least-squares split, which maximises the
    posterior itself: more answers within one build of a clear step, and more within a bisect-sized range
    of a weak one; docs/benchmarks.md, "Localisation".)"""
    if (within <= 0).any():
        return int(k[np.argmax(within <= 0)])  # two flat levels: exact
    log_post = -0.5 * np.log(k * (n - k)) - (n - 2) / 2 * np.log(within)
    mass = np.exp(log_post - log_post.max())
    score = _window_sum(mass, 1) + _window_sum(mass, _LOCATE_WINDOW)
    near_best = np.flatnonzero(score >= score.max() * (1 - 1e-9))  # a tie (a plateau of mass):
    return int(k[near_best[np.argmax(mass[near_best])]])  # take its own top


def _window_sum(mass: np.ndarray, w: int) -> np.ndarray:
    """mass summed over each +-w neighbourhood (cut at the ends)."""
    return np.convolve(mass, np.ones(2 * w + 1))[w : w + mass.size]


def _max_t_pvalue(t: float, n: int, min_size: int) -> float:
    """P(max over splits of |t_k| >= t) with no change in n iid values. t_k is turned into the normal score
    with the same tail (exact: t has n - 2 degrees of freedom), then Siegmund's approximation for the
    maximum of the standardised two-sample process (which decorrelates by n / (2k(n-k)) per step at k),
    kept between the tail of one split and Bonferroni's bound over all of them."""
    tail = t_two_sided(t, n - 2)
    if tail == 0:
        return 0.0
    b = -_NORMAL.inv_cdf(tail / 2)
    k = np.arange(min_size, n - min_size + 1)
    rate = n / (2 * k * (n - k))
    siegmund = 2 * b * _NORMAL.pdf(b) * float((rate * _overshoot(b * np.sqrt(2 * rate))).sum())
    return min(1.0, max(tail, min(siegmund, k.size * tail)))  # never below one split's own tail


def _max_interval_pvalue(t: float, n: int, min_size: int) -> float:
    """As _max_t_pvalue for the scan over intervals: each end point moves like a split point, so the
    expected number of crossings sums 2 b^3 phi(b) (rate nu)^2 over interval lengths and positions
    (Siegmund's approximation, as used for circular binary segmentation)."""
    tail = t_two_sided(t, n - 2)
    if tail == 0:
        return 0.0
    b = -_NORMAL.inv_cdf(tail / 2)
    size = np.arange(min_size, n - 2 * min_size + 1)
    positions = n - 2 * min_size - size + 1
    rate = n / (2 * size * (n - size))
    crossings = 2 * b**3 * _NORMAL.pdf(b) * float((positions * (rate * _overshoot(b * np.sqrt(2 * rate))) ** 2).sum())
    return min(1.0, max(tail, min(crossings, positions.sum() * tail)))


def _overshoot(x: np.ndarray) -> np.ndarray:
    """Siegmund's nu(x): the correction for a process observed at discrete steps (Siegmund and Yakir's
    approximation)."""
    half = x / 2
    cdf = np.array([0.5 * math.erfc(-h / math.sqrt(2)) for h in half.tolist()])
    pdf = np.exp(-(half**2) / 2) / math.sqrt(2 * math.pi)
    safe = np.where(x > 0, x, 1.0)
    return np.where(x > 0, (2 / safe) * (cdf - 0.5) / (half * cdf + pdf), 1.0)  # nu(0) = 1: no overshoot


def t_two_sided(t: float, dof: int) -> float:
    """P(|T| >= t) for Student's t with `dof` degrees of freedom."""
    from scipy.special import stdtr  # loaded on first use: the CLI starts without SciPy

    return float(2 * stdtr(dof, -abs(t)))


# --- shared ------------------------------------------------------------------------------------------------------


def _relative(value: float, reference: float) -> float:
    """(value - reference) / |reference|; 0 or +-inf when the reference is 0."""
    if reference == 0:
        return _from_zero(value)
    return (value - reference) / abs(reference)


def _from_zero(shift: float) -> float:
    return 0.0 if shift == 0 else math.copysign(math.inf, shift)


def _finite(values: Sequence[float], name: str) -> np.ndarray:
    a = np.asarray(_numbers(values, name), dtype=float)
    return a[np.isfinite(a)]


def _numbers(values: Sequence[float], name: str) -> np.ndarray:
    try:
        a = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name}: expected a sequence of numbers ({e})") from None
    if a.ndim != 1:
        raise ConfigError(f"{name}: expected a flat sequence of numbers, got shape {a.shape}")
    return a


def _check_level(value: float, name: str) -> None:
    if not 0 < value < 1:
        raise ConfigError(f"{name} must lie strictly between 0 and 1, got {value}")


def _check_effect(value: float) -> None:
    if not 0 < value < math.inf:
        raise ConfigError(f"min_effect must be a positive relative change (0.05 = 5%), got {value}")
