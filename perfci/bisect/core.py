"""Find the first bad build between a known good and a known bad one, with noisy measurements.

The method is Bayesian over where the step is. Candidates are ordered; the first is good, the last is bad.
The unknown is `k`, the first bad candidate (1..N-1), or "no step at all" (the references do not differ).
Each trial is one measurement of one candidate, on a log scale when values are positive (noise in latency,
throughput and startup times is multiplicative). Under a step at `k`, a candidate's trials are normal
around the good level before `k` and around the bad level from `k` on, with one unknown noise scale. The
levels and the noise are integrated out in closed form (flat prior on the good level, the step half-normal
on the side the metric calls worse with a standard deviation of `STEP_SCALE` noise scales, Jeffreys prior
on the noise), so the posterior over `k` accounts for how little a few trials say about the noise, which is
what keeps the stated confidence honest (benchmarks/bisect_efficiency.py compares confidence with the hit
rate). Where it is not: a step about as large as the noise, with the noise estimated from this bisect's
trials alone — the search can stop right after a few trials that happened to scatter little. A noise known
from earlier runs (`noise=`) enters as a prior worth `NOISE_PRIOR_TRIALS` trials, with a narrower step prior
(`STEP_SCALE_KNOWN_NOISE`), which is calibrated there too.

Each next trial goes where it is expected to tell the most about `k` (`_information`): the entropy of the
predicted value, mixed over the posterior, minus the entropy each split alone predicts. Continuous values
carry more than pass/fail: a trial far from both levels counts for less than one right at a level, every
trial sharpens the estimates of the levels and the noise, and measuring a reference again is worth it
exactly when the levels are too uncertain for a new candidate to say much.

The search stops when one candidate holds `confidence` of the posterior given a step, "no step" holds
less than `1 - confidence`, and it and its parent (the nearest candidate before it that could be measured)
have been measured directly, `VERIFY_TRIALS` times together — the culprit is only named once it has been
compared with its parent; when "no step" holds `confidence` or the references are shown equivalent (cannot
reproduce); or after `max_trials`. A candidate whose `measure` raises EngineError (BuildError included:
cannot be installed or crashes) is skipped, like `git bisect`'s exit 125: if the step may lie in a run of
skipped candidates, the result names the ambiguous range instead of a culprit.

Pure: `measure` is injected; `history` replays stored trials without measuring again (resume).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import numpy as np

from perfci.errors import ConfigError, EngineError
from perfci.verdicts.detect import t_two_sided

C = TypeVar("C")
Outcome = Literal["culprit", "ambiguous", "cannot-reproduce", "inconclusive"]
ProbeVerdict = Literal["good", "bad", "inconclusive", "skipped", "untested"]

STEP_SCALE = 8.0  # prior standard deviation of the step, in noise scales (wide: a step is there to be found)
# With the noise known the step's unit is reliable, and a narrower prior keeps 1-noise-scale steps from being
# named on a few lucky trials at no cost in trials elsewhere (measured: docs/benchmarks.md). With the noise
# estimated from a few trials, the same prior would cost 1-2 trials per bisect at 2.5 noise scales.
STEP_SCALE_KNOWN_NOISE = 3.0
PRIOR_NO_STEP = 0.1  # prior P(references do not differ): bisects start from confirmed regressions
VERIFY_TRIALS = 3  # trials of culprit and parent together (each measured) before a culprit is named
REFERENCE_TRIALS = 1  # trials of each reference before the search starts
EQUIVALENCE_TRIALS = 3  # trials of each reference before they can be shown not to differ
MAX_TRIALS = 100
MIN_EFFECT = 0.02  # references closer than this (equivalence test at 95%) cannot be bisected
SECOND_STEP_P = 0.01  # a side of the culprit where P(no step) is below this may hold another step...
SECOND_STEP_TRIALS = 2  # ...once both sides of that step rest on at least this many trials
SIDE_PRIOR_NO_STEP = 0.5  # a second step is searched as no likelier than none
NOISE_PRIOR_TRIALS = 10  # a known noise level counts as much as this many trials' worth of its estimate


@dataclass(frozen=True)
class Trial:
    """One call of `measure`: the candidate's index and its value, or the error that made it skip."""

    index: int
    value: float | None
    error: str = ""


@dataclass(frozen=True)
class Probe:
    """What the bisect knows about one candidate: its trials and P(it is bad), as a verdict."""

    index: int
    candidate: object
    samples: tuple[float, ...]
    p_bad: float
    verdict: ProbeVerdict


@dataclass(frozen=True)
class BisectResult(Generic[C]):
    """`culprit`: the first bad candidate (None unless `outcome` is "culprit"); `confidence`: the posterior
    probability of that answer given that the references differ (P(no step) is below 1 - confidence when a
    culprit is named; for cannot-reproduce it is that of "no step"); `suspects`: the index range [first, last]
    the step lies in when skipped candidates leave it ambiguous; `rel_change`: the bad level against the
    good one (+0.12: 12% higher), from all trials split at the culprit; `others`: further steps found on
    either side of the culprit (a regression made of two changes)."""

    outcome: Outcome
    culprit: C | None
    culprit_index: int | None
    confidence: float
    trials: int
    probes: list[Probe]
    rel_change: float
    regression: bool | None  # the bad reference is worse in the metric's direction
    suspects: tuple[int, int] | None = None
    others: list[BisectResult[C]] = field(default_factory=list)


def bisect(candidates: Sequence[C], measure: Callable[[C], float], *, higher_is_better: bool,
           confidence: float = 0.95, min_effect: float = MIN_EFFECT, max_trials: int = MAX_TRIALS,
           history: Iterable[Trial] = (), on_trial: Callable[[Trial], None] | None = None,
           second_steps: bool = True, noise: float | None = None) -> BisectResult[C]:  # fmt: skip
    """Bisect `candidates` (first known good, last known bad) calling `measure` for one trial at a time.

    `history`: trials already taken (a resumed bisect); `on_trial` sees each new trial as it is taken (to
    store it). `trials` in the result counts every trial, replayed ones included. `min_effect`: references
    shown to differ by less than this are "cannot-reproduce" (a Bayes factor alone takes ~100 trials to
    prove that nothing changed). `noise`: the metric's relative noise per trial when known from earlier runs
    (0.02: 2%), a prior on the noise worth `NOISE_PRIOR_TRIALS` trials. Without it the noise is estimated
    from this bisect's trials alone, and a search that stops after a few trials that happened to scatter
    little states too much confidence when the step is as small as the noise (docs/benchmarks.md).
    """
    if len(candidates) < 2:
        raise ConfigError(f"bisect needs a good and a bad candidate, got {len(candidates)}")
    if not 0.5 < confidence < 1:
        raise ConfigError(f"bisect confidence must be in (0.5, 1), got {confidence}")
    if not 0 < min_effect < 1:
        raise ConfigError(f"bisect min_effect must be in (0, 1), got {min_effect}")
    if noise is not None and not 0 < noise < 1:
        raise ConfigError(f"bisect noise must be a relative noise in (0, 1), got {noise}")
    state = _State(len(candidates), min_effect, worse=-1 if higher_is_better else 1, noise=noise)
    for trial in history:
        state.add(trial)
    result = _search(state, 0, len(candidates) - 1, candidates, measure, higher_is_better, confidence,
                     max_trials, on_trial)  # fmt: skip
    if second_steps and result.outcome == "culprit":
        result = _with_second_steps(result, state, candidates, measure, higher_is_better, confidence, max_trials,
                                    on_trial)  # fmt: skip
    return result


class _State:
    """Trials per candidate (shared by the searches of one bisect) and the candidates that cannot be measured."""

    def __init__(self, n: int, min_effect: float, worse: int, noise: float | None = None):
        self.min_effect = min_effect
        self.worse = worse  # +1: a regression raises the metric (latency); -1: it lowers it (throughput)
        self.prior_noise = _NoisePrior.known(noise) if noise else _NoisePrior()
        self.samples: list[list[float]] = [[] for _ in range(n)]
        self.errors: dict[int, str] = {}
        self.trials = 0

    def add(self, trial: Trial) -> None:
        if not 0 <= trial.index < len(self.samples):
            raise ConfigError(f"stored trial for candidate {trial.index}, but there are {len(self.samples)}")
        self.trials += 1
        if trial.value is None or not math.isfinite(trial.value):
            self.errors[trial.index] = trial.error or f"not a finite value: {trial.value}"
        else:
            self.samples[trial.index].append(float(trial.value))

    def take(self, index: int, candidates: Sequence[C], measure: Callable[[C], float],
             on_trial: Callable[[Trial], None] | None) -> None:  # fmt: skip
        try:
            trial = Trial(index, float(measure(candidates[index])))
        except EngineError as e:
            trial = Trial(index, None, str(e).splitlines()[0] if str(e) else type(e).__name__)
        self.add(trial)
        if on_trial is not None:
            on_trial(trial)

    def transformed(self, lo: int, hi: int) -> list[np.ndarray]:
        """Samples of candidates lo..hi on the scale the model works on: logs when every value is positive."""
        chunks = [np.asarray(s, dtype=float) for s in self.samples[lo : hi + 1]]
        values = np.concatenate(chunks) if chunks else np.empty(0)
        if values.size and (values > 0).all():
            return [np.log(c) for c in chunks]
        scale = float(np.median(np.abs(values))) if values.size else 1.0
        return [c / (scale or 1.0) for c in chunks]


@dataclass(frozen=True)
class _NoisePrior:
    """The noise before this bisect's trials: unknown (Jeffreys), or known from earlier runs as `trials`
    pseudo-trials with sum of squares `ss` on the model's scale."""

    ss: float = 0.0
    trials: int = 0
    step_scale: float = STEP_SCALE

    @classmethod
    def known(cls, noise: float) -> _NoisePrior:
        # On the model's scale: logs, or values over their median, where a relative noise is the same to
        # first order.
        return cls(NOISE_PRIOR_TRIALS * math.log1p(noise) ** 2, NOISE_PRIOR_TRIALS, STEP_SCALE_KNOWN_NOISE)


@dataclass(frozen=True)
class _Posterior:
    p_k: np.ndarray  # P(first bad = lo + 1 + i), i = 0 .. hi - lo - 1, jointly with "a step exists"
    p_none: float

    def p_bad(self, offset: int) -> float:
        """P(candidate lo + offset is bad | a step exists)."""
        total = float(self.p_k.sum())
        return float(self.p_k[:offset].sum() / total) if total > 0 else math.nan


def _posterior(ys: list[np.ndarray], worse: int, prior_noise: _NoisePrior,
               prior_none: float = PRIOR_NO_STEP) -> _Posterior:  # fmt: skip
    """Posterior over the first bad offset within a range whose first entry is good and last is bad (worse
    in the direction `worse`)."""
    from scipy.special import stdtr  # Student's t CDF; loaded on first use: the CLI starts without SciPy

    n_cands = len(ys)
    counts = np.array([y.size for y in ys])
    measured = np.flatnonzero(counts)
    k_count = n_cands - 1
    prior_k = (1 - prior_none) / k_count
    n = int(counts.sum())
    if n < 3 or counts[0] == 0 or counts[-1] == 0:
        return _Posterior(np.full(k_count, prior_k), prior_none)
    all_y = np.concatenate([ys[i] for i in measured])
    centred = all_y - all_y.mean()
    s_yy = float(centred @ centred)
    # Split after the j-th measured candidate (j = 1 .. J-1): the first j are good.
    group_n = counts[measured]
    group_sum = np.array([ys[i].sum() for i in measured]) - group_n * all_y.mean()
    n_good = np.cumsum(group_n)[:-1]
    n_bad = n - n_good
    s_zz = n_good * n_bad / n
    s_zy = group_sum.sum() - np.cumsum(group_sum)[:-1]  # sum over the bad side of centred values
    g = prior_noise.step_scale**2
    tiny = 1e-300 + 1e-12 * s_yy + 1e-24 * float(all_y @ all_y)  # rounding, not noise, below this
    prior_ss = prior_noise.ss
    dof = n - 1 + prior_noise.trials
    q = np.maximum(s_yy - s_zy**2 / (s_zz + 1 / g), tiny) + prior_ss
    log_m = -0.5 * np.log1p(g * s_zz) - dof / 2 * np.log(q)
    # The bad side is worse (`worse`: +1 when worse is higher): the step's prior is the half of the normal on
    # that side, which doubles the density there and multiplies by P(step on that side | data, split).
    shift = worse * s_zy / np.sqrt(q / dof * (s_zz + 1 / g))
    log_m += math.log(2) + np.log(np.maximum(stdtr(dof, shift), 1e-300))  # P(T >= -shift), all splits at once
    log_none = -dof / 2 * math.log(max(s_yy, tiny) + prior_ss)
    # Offset k (first bad) falls after measured candidate j when measured[j-1] < k <= measured[j].
    split_of_k = np.searchsorted(measured, np.arange(1, n_cands), side="left") - 1
    log_k = log_m[split_of_k] + math.log(prior_k)
    log_n = log_none + math.log(prior_none)
    top = max(float(log_k.max()), log_n)
    p_k, p_none = np.exp(log_k - top), math.exp(log_n - top)
    total = float(p_k.sum()) + p_none
    return _Posterior(p_k / total, p_none / total)


def _search(state: _State, lo: int, hi: int, candidates: Sequence[C], measure: Callable[[C], float],
            higher_is_better: bool, confidence: float, max_trials: int, on_trial: Callable[[Trial], None] | None,
            second_step: bool = False) -> BisectResult[C]:  # fmt: skip
    """Search lo..hi. A second-step search starts from "no step" as likely as a step and gives up as soon as
    "no step" is the likelier: it was started on evidence that then did not hold up."""
    prior_none, enough_none = (SIDE_PRIOR_NO_STEP,) * 2 if second_step else (PRIOR_NO_STEP, confidence)
    while True:
        ys = state.transformed(lo, hi)
        post = _posterior(ys, state.worse, state.prior_noise, prior_none)
        decision = _decide(state, ys, lo, hi, post, confidence, max_trials, enough_none)
        if isinstance(decision, int):
            state.take(decision, candidates, measure, on_trial)
            continue
        return _result(state, ys, lo, hi, candidates, post, decision, higher_is_better)


def _best_atom(state: _State, lo: int, hi: int, post: _Posterior) -> tuple[int, int, float]:
    """(parent, culprit, probability) of the likeliest atom: the step lies after `parent` and at or before
    `culprit`, both of which can be measured, everything between them skipped. The probability is given
    that a step exists (whether one does is settled apart, by P(no step))."""
    skipped = [i for i in state.errors if lo < i < hi]
    measurable = np.setdiff1d(np.arange(lo, hi + 1), skipped)
    cumulative = np.concatenate([[0.0], np.cumsum(post.p_k)])  # cumulative[j]: P(first bad offset <= j)
    mass = cumulative[measurable[1:] - lo] - cumulative[measurable[:-1] - lo]
    best = int(np.argmax(mass))
    return int(measurable[best]), int(measurable[best + 1]), float(mass[best] / max(float(post.p_k.sum()), 1e-300))


def _decide(state: _State, ys: list[np.ndarray], lo: int, hi: int, post: _Posterior, confidence: float,
            max_trials: int, enough_none: float) -> int | tuple[Outcome, int, int, float]:  # fmt: skip
    """The next candidate to measure, or (outcome, parent, culprit, probability) when done. `ys`: the trials
    of lo..hi as the model sees them (`_State.transformed`)."""
    parent, culprit, p_best = _best_atom(state, lo, hi, post)
    if post.p_none >= enough_none:
        return ("cannot-reproduce", lo, hi, post.p_none)
    if _equivalent(state, ys, lo, hi):
        return ("cannot-reproduce", lo, hi, 0.95)
    if p_best >= confidence and post.p_none <= 1 - confidence:
        pair = [len(state.samples[i]) for i in (parent, culprit)]
        short = [] if min(pair) >= 1 and sum(pair) >= VERIFY_TRIALS else \
            [i for i in (parent, culprit) if len(state.samples[i]) == min(pair)]  # fmt: skip
        if not short:
            return ("culprit" if culprit - parent == 1 else "ambiguous", parent, culprit, p_best)
        if state.trials < max_trials:
            return min(short, key=lambda i: len(state.samples[i]))
    if state.trials >= max_trials:
        return ("inconclusive", parent, culprit, p_best)
    refs = (lo, hi)
    counts = np.array([y.size for y in ys])
    if min(counts[0], counts[-1]) < REFERENCE_TRIALS or post.p_none >= 0.5:
        return min(refs, key=lambda i: (len(state.samples[i]), i))
    skipped = [i - lo for i in state.errors if lo < i < hi]
    if counts.sum() < 3:  # the noise cannot be estimated yet: split the candidates in half
        p_bad = np.concatenate([[0.0], np.cumsum(post.p_k)[:-1] / max(float(post.p_k.sum()), 1e-300), [1.0]])
        score = np.minimum(p_bad, 1 - p_bad)
    else:
        score = _information(ys, post.p_k, state.prior_noise)
    score[skipped] = -np.inf
    return lo + int(np.argmax(score))


def _information(ys: list[np.ndarray], p_k: np.ndarray, prior_noise: _NoisePrior, grid: int = 161) -> np.ndarray:
    """Expected information (nats) about the first bad candidate from one more trial of each candidate.

    A trial's value is predicted, under each split of the measured candidates into a good and a bad side, by
    Student's t around that side's mean, with the pooled noise estimate widened by how few trials that side
    has (the levels taken as flat here; the step prior of the posterior is wide enough that this changes
    nothing that matters for choosing). The gain is the entropy of the mixture of these predictions over
    the posterior minus their average entropy. It is highest where the outcome is least predictable, and it
    also counts how well the sides' levels are known: a reference or a candidate with one stray trial is
    measured again when that settles more than a new candidate would.
    """
    counts = np.array([y.size for y in ys])
    measured = np.flatnonzero(counts)
    n = int(counts.sum())
    dof = n - 2 + prior_noise.trials
    sums = np.array([ys[i].sum() for i in measured])
    n_good = np.cumsum(counts[measured])[:-1].astype(float)  # split j: the first j measured are good
    n_bad = n - n_good
    s_good = np.cumsum(sums)[:-1]
    s_bad = sums.sum() - s_good
    squares = float(sum(float(ys[i] @ ys[i]) for i in measured))
    rss = np.maximum(squares - s_good**2 / n_good - s_bad**2 / n_bad, 1e-12 * max(squares, 1e-300))
    noise = np.sqrt((rss + prior_noise.ss) / dof)
    # Posterior mass of each split (its run of first-bad offsets), and of its offsets at or before candidate c.
    split_of_k = np.searchsorted(measured, np.arange(1, len(ys)), side="left") - 1
    mass = np.bincount(split_of_k, weights=p_k, minlength=len(measured) - 1)
    total = float(mass.sum())
    if total <= 0:
        return np.zeros(len(ys))
    mass, p_k = mass / total, p_k / total
    starts = np.concatenate([[0.0], np.cumsum(mass)[:-1]])
    p_upto = np.concatenate([[0.0], np.cumsum(p_k)])  # P(first bad offset <= c), c = 0 .. len - 1
    w_bad = np.clip(p_upto[:, None] - starts[None, :], 0.0, mass[None, :])
    w_good = mass[None, :] - w_bad
    keep = mass > 1e-9
    sides = [(s_good / n_good, noise * np.sqrt(1 + 1 / n_good), w_good),
             (s_bad / n_bad, noise * np.sqrt(1 + 1 / n_bad), w_bad)]  # fmt: skip
    low = min(float((m - 8 * sc)[keep].min()) for m, sc, _ in sides)
    high = max(float((m + 8 * sc)[keep].max()) for m, sc, _ in sides)
    y = np.linspace(low, high, grid)
    step = y[1] - y[0]
    density = np.zeros((len(ys), grid))
    own_entropy = np.zeros(len(ys))
    for mean, scale, weight in sides:
        f = _t_density(y[None, :], mean[keep, None], scale[keep, None], dof)
        density += weight[:, keep] @ f
        own_entropy += weight[:, keep] @ -(f * np.log(np.maximum(f, 1e-300))).sum(axis=1) * step
    mixture_entropy = -(density * np.log(np.maximum(density, 1e-300))).sum(axis=1) * step
    return mixture_entropy - own_entropy


def _t_density(y: np.ndarray, mean: np.ndarray, scale: np.ndarray, dof: int) -> np.ndarray:
    # Written out rather than scipy.stats.t.pdf, which computes the same values ~50 times slower on the
    # (candidates x grid) arrays of `_information` (benchmarks/hot_paths.py).
    log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    z = (y - mean) / scale
    return np.exp(log_norm - (dof + 1) / 2 * np.log1p(z * z / dof)) / scale


def _equivalent(state: _State, ys: list[np.ndarray], lo: int, hi: int) -> bool:
    """TOST at 5%: do the references' trials show that they differ by less than `min_effect`?"""
    good, bad = ys[0], ys[-1]
    if min(good.size, bad.size) < EQUIVALENCE_TRIALS:
        return False
    logs = all(v > 0 for s in state.samples[lo : hi + 1] for v in s)
    margin = math.log1p(state.min_effect) if logs else state.min_effect
    diff = float(bad.mean() - good.mean())
    dof = good.size + bad.size - 2
    pooled = (float(((good - good.mean()) ** 2).sum()) + float(((bad - bad.mean()) ** 2).sum())) / dof
    se = math.sqrt(pooled * (1 / good.size + 1 / bad.size))
    if se == 0:
        return abs(diff) < margin
    return all(_one_sided(t, dof) < 0.05 for t in ((diff + margin) / se, (margin - diff) / se))


def _one_sided(t: float, dof: int) -> float:
    """P(T >= t) for Student's t."""
    half = t_two_sided(t, dof) / 2
    return half if t > 0 else 1 - half


def _result(state: _State, ys: list[np.ndarray], lo: int, hi: int, candidates: Sequence[C], post: _Posterior,
            decision: tuple[Outcome, int, int, float], higher_is_better: bool) -> BisectResult[C]:  # fmt: skip
    outcome, parent, culprit, p = decision
    split = culprit - lo if outcome != "cannot-reproduce" else hi - lo
    good = np.concatenate(ys[:split]) if split else np.empty(0)
    bad = np.concatenate(ys[split:])
    ref_good, ref_bad = ys[0], ys[-1]
    rel = _rel(good, bad, state, lo, hi)
    regression = None
    if ref_good.size and ref_bad.size:
        worse = float(ref_bad.mean()) < float(ref_good.mean())
        regression = worse if higher_is_better else not worse
    probes = [_probe(state, i, candidates, post, lo) for i in range(lo, hi + 1)]
    named = outcome == "culprit"
    return BisectResult(
        outcome=outcome,
        culprit=candidates[culprit] if named else None,
        culprit_index=culprit if named else None,
        confidence=p,
        trials=state.trials,
        probes=probes,
        rel_change=rel,
        regression=regression,
        suspects=(parent + 1, culprit) if outcome in ("ambiguous", "inconclusive") else None,
    )


def _rel(good: np.ndarray, bad: np.ndarray, state: _State, lo: int, hi: int) -> float:
    if not good.size or not bad.size:
        return math.nan
    values = np.concatenate([np.asarray(s, dtype=float) for s in state.samples[lo : hi + 1]])
    if (values > 0).all():
        return float(np.expm1(bad.mean() - good.mean()))
    return float((bad.mean() - good.mean()) / abs(good.mean())) if good.mean() else math.nan


def _probe(state: _State, index: int, candidates: Sequence[C], post: _Posterior, lo: int) -> Probe:
    samples = tuple(state.samples[index])
    p_bad = post.p_bad(index - lo) if index > lo else 0.0
    verdict: ProbeVerdict
    if index in state.errors and not samples:
        verdict = "skipped"
    elif not samples:
        verdict = "untested"
    elif p_bad >= 0.95:
        verdict = "bad"
    elif p_bad <= 0.05:
        verdict = "good"
    else:
        verdict = "inconclusive"
    return Probe(index, candidates[index], samples, p_bad, verdict)


def _with_second_steps(result: BisectResult[C], state: _State, candidates: Sequence[C],
                       measure: Callable[[C], float], higher_is_better: bool, confidence: float, max_trials: int,
                       on_trial: Callable[[Trial], None] | None) -> BisectResult[C]:  # fmt: skip
    """Search each side of the culprit again when its measured candidates still differ among themselves."""
    culprit = result.culprit_index
    assert culprit is not None
    parent = max(i for i in range(culprit) if i not in state.errors or i == 0)
    others = []
    for lo, hi in ((0, parent), (culprit, len(candidates) - 1)):
        if hi - lo >= 1 and _confirmed_step(state, lo, hi, candidates, measure, max_trials, on_trial):
            side = _search(state, lo, hi, candidates, measure, higher_is_better, confidence, max_trials, on_trial,
                           second_step=True)
            if side.outcome == "culprit":
                others.append(side)
    return BisectResult(**{**result.__dict__, "trials": state.trials, "others": others})


def _confirmed_step(state: _State, lo: int, hi: int, candidates: Sequence[C], measure: Callable[[C], float],
                    max_trials: int, on_trial: Callable[[Trial], None] | None) -> bool:  # fmt: skip
    """Does a side hold another step? Its trials must make one all but certain with each side of the likeliest
    split resting on at least `SECOND_STEP_TRIALS` trials: one stray trial among a few tight ones also makes a
    step "certain", so the thinner side is measured again (nearest the split first) before a search starts."""
    while True:
        ys = state.transformed(lo, hi)
        # Both ends measured, and the side's own trials make a step all but certain (searching a clean side
        # would spend trials proving that it is clean).
        if not (ys[0].size and ys[-1].size):
            return False
        post = _posterior(ys, state.worse, state.prior_noise)
        if post.p_none >= SECOND_STEP_P:
            return False
        split = lo + 1 + int(np.argmax(post.p_k))  # the likeliest first bad candidate
        thin = [i for i in range(lo, split) if i not in state.errors][::-1], \
            [i for i in range(split, hi + 1) if i not in state.errors]  # fmt: skip
        short = min(thin, key=lambda side: sum(len(state.samples[i]) for i in side))
        if sum(len(state.samples[i]) for i in short) >= SECOND_STEP_TRIALS:
            return True
        if state.trials >= max_trials:
            return False
        state.take(next(i for i in short if state.samples[i]), candidates, measure, on_trial)


@dataclass(frozen=True)
class StepVerdict:
    """One `git bisect run` step: the median of a build's trial values against a threshold."""

    values: tuple[float, ...]
    median: float
    threshold: float
    good: bool

    def summary(self, metric: str) -> str:
        return (f"{metric} median {self.median:.4g} ({', '.join(f'{v:.4g}' for v in self.values)}): "
                f"{'good' if self.good else 'bad'} against {self.threshold:g}")  # fmt: skip


def judge_step(values: Sequence[float], *, threshold: float, higher_is_better: bool) -> StepVerdict:
    """Good when the median (the upper one of an even count) is on the good side of `threshold`, or on it."""
    if not values:
        raise ValueError("no trial values to judge")
    median = sorted(values)[len(values) // 2]
    good = median >= threshold if higher_is_better else median <= threshold
    return StepVerdict(tuple(values), median, threshold, good)
