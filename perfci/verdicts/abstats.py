"""The statistics of an A/B session (`perfci ab`, docs/ab.md). Pure: values in, verdicts out; no I/O.

The unit of replication is the block (one fresh engine start and the suite's points), never the request:
requests inside one start share that start's state (memory layout, compiled kernels, clocks), so only
blocks are independent samples of "this build on this machine".

Per series, on the log of each block's value: a pooled two-sample t test (baseline blocks vs candidate
blocks, df = n_A + n_B − 2), whose difference of means is the log ratio of geometric means. Its confidence
interval and the minimum detectable effect (80 % power at the same α) are reported as relative changes. The
p values of one session's series are adjusted together (Benjamini–Hochberg), so judging fifty series at once
does not turn noise into a FAIL: when nothing changed (A/A) the chance of any FAIL stays at α, and when a
change moves many related series (every decode latency, the throughputs) they support each other instead of
each paying for all fifty, as under Holm. The adjustment runs per direction: regressions support
regressions and improvements support improvements, so a real speed-up cannot lend a noisy series the
evidence to FAIL.

The A/A guard: in ABBA order the baseline's blocks sit at both ends of the session, so a machine that
drifts (thermal, a neighbour, a clock change) makes the baseline's first half disagree with its second half.
When that disagreement is at least as large as the A/B change (and at least `min_effect`), the baseline
differs from itself as much as from the candidate and the series is INCONCLUSIVE ("machine unstable"),
never FAIL. A control series (one the change cannot affect, such as the prompt-token count the load
generator sends) that moves makes the whole session INCONCLUSIVE.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

ALPHA = 0.05
POWER = 0.80
MIN_EFFECT = 0.02  # same machine, interleaved: changes under 2 % are "equal" by default
CONTROL_TOLERANCE = 0.005  # a control series may move this much (relative) between blocks

PASS, FAIL, IMPROVED, INCONCLUSIVE = "PASS", "FAIL", "IMPROVED", "INCONCLUSIVE"
VERDICTS = (FAIL, INCONCLUSIVE, IMPROVED, PASS)  # worst first


@dataclass(frozen=True, slots=True)
class SeriesValues:
    """One series' value per block, in session order; None where the block did not measure it."""

    name: str  # what the series is, e.g. "tiny-llama · short · c=4 · itl_ms_p50"
    metric: str
    higher_is_better: bool
    baseline: tuple[float | None, ...]
    candidate: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class SeriesVerdict:
    name: str
    metric: str
    verdict: str
    change: float | None  # candidate / baseline − 1 (geometric means of the blocks)
    low: float | None  # confidence interval of `change`, at 1 − α
    high: float | None
    mde: float | None  # smallest relative change this session detects with 80 % power
    p: float | None
    p_adjusted: float | None  # Benjamini–Hochberg over the session's series
    aa_change: float | None  # baseline second half / first half − 1 (the A/A guard)
    n_baseline: int
    n_candidate: int
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: str  # the session's: FAIL if any series fails, else the worst of the rest (see `overall`)
    reason: str
    series: tuple[SeriesVerdict, ...]

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "reason": self.reason, "series": [s.as_dict() for s in self.series]}


def judge(series: Sequence[SeriesValues], *, controls: Sequence[SeriesValues] = (), problems: Sequence[str] = (),
          alpha: float = ALPHA, min_effect: float = MIN_EFFECT) -> Judgement:  # fmt: skip
    """Judge every series of one session. `problems` are session-wide reasons the machine cannot be trusted
    (a changed hardware identity, a block that failed): they make every verdict INCONCLUSIVE."""
    unstable = [*problems, *_moved_controls(controls)]
    tests = [_test(s, alpha) for s in series]
    adjusted = _adjust_by_direction(series, tests)
    verdicts = tuple(_verdict(s, t, p_adj, alpha, min_effect, unstable)
                     for s, t, p_adj in zip(series, tests, adjusted, strict=True))  # fmt: skip
    return Judgement(*overall(verdicts, unstable), verdicts)


def overall(verdicts: Sequence[SeriesVerdict], unstable: Sequence[str] = ()) -> tuple[str, str]:
    """FAIL if any series regressed; else INCONCLUSIVE if the machine was unstable; else IMPROVED if any
    series improved (none regressed; some may be undecided); else INCONCLUSIVE if any series could not be
    decided; else PASS."""
    count = {v: sum(s.verdict == v for s in verdicts) for v in VERDICTS}
    undecided = f"; {count[INCONCLUSIVE]} undecided" if count[INCONCLUSIVE] else ""
    if count[FAIL]:
        return FAIL, f"{count[FAIL]} of {len(verdicts)} series regressed"
    if unstable:
        return INCONCLUSIVE, "machine unstable: " + "; ".join(unstable)
    if not verdicts:
        return INCONCLUSIVE, "no series was measured in both arms"
    if count[IMPROVED]:
        return IMPROVED, f"{count[IMPROVED]} of {len(verdicts)} series improved, none regressed{undecided}"
    if count[INCONCLUSIVE]:
        return INCONCLUSIVE, f"{count[INCONCLUSIVE]} of {len(verdicts)} series could not be decided"
    return PASS, f"no regression in any of the {len(verdicts)} series"


@dataclass(frozen=True, slots=True)
class _Test:
    n_a: int
    n_b: int
    d: float | None = None  # mean log candidate − mean log baseline
    se: float | None = None
    df: int = 0
    p: float | None = None
    aa: float | None = None  # mean log baseline second half − first half
    why: str = ""


def _test(s: SeriesValues, alpha: float) -> _Test:
    a = [v for v in s.baseline if v is not None and math.isfinite(v)]
    b = [v for v in s.candidate if v is not None and math.isfinite(v)]
    if len(a) < 2 or len(b) < 2:
        return _Test(len(a), len(b), why=f"measured in {len(a)} baseline and {len(b)} candidate blocks; need ≥ 2 each")
    if all(v == 0 for v in a + b):
        return _Test(len(a), len(b), d=0.0, se=0.0, df=len(a) + len(b) - 2, p=1.0, aa=0.0)
    if min(a + b) <= 0:
        return _Test(len(a), len(b), why="values ≤ 0 have no ratio")
    la, lb = [math.log(v) for v in a], [math.log(v) for v in b]
    ma, mb = _mean(la), _mean(lb)
    df = len(a) + len(b) - 2
    ss = sum((x - ma) ** 2 for x in la) + sum((x - mb) ** 2 for x in lb)
    se = math.sqrt(ss / df * (1 / len(a) + 1 / len(b)))
    d = mb - ma
    if se == 0:
        p = 1.0 if d == 0 else 0.0
    else:
        p = 2 * t_sf(abs(d) / se, df)
    half = len(la) // 2  # an odd middle block belongs to neither half
    aa = _mean(la[len(la) - half:]) - _mean(la[:half])
    return _Test(len(a), len(b), d=d, se=se, df=df, p=p, aa=aa)


def _verdict(s: SeriesValues, t: _Test, p_adj: float | None, alpha: float, min_effect: float,
             unstable: Sequence[str]) -> SeriesVerdict:  # fmt: skip
    def made(verdict: str, reason: str) -> SeriesVerdict:
        return SeriesVerdict(s.name, s.metric, verdict, change, low, high, mde, t.p, p_adj, aa, t.n_a, t.n_b, reason)

    change = low = high = mde = aa = None
    if t.d is None or t.se is None:
        return made(INCONCLUSIVE, t.why)
    crit = t_ppf(1 - alpha / 2, t.df)
    change, aa = math.expm1(t.d), math.expm1(t.aa or 0.0)
    low, high = math.expm1(t.d - crit * t.se), math.expm1(t.d + crit * t.se)
    mde = math.expm1((crit + t_ppf(POWER, t.df)) * t.se)
    worse = (t.d < 0) if s.higher_is_better else (t.d > 0)
    # The candidate-is-worse end of the interval, as a relative change in the bad direction.
    worst = (-low if s.higher_is_better else high) if t.se else abs(change) * worse
    if unstable:
        return made(INCONCLUSIVE, "machine unstable: " + "; ".join(unstable))
    if t.aa is not None and abs(t.aa) >= max(abs(t.d), math.log1p(min_effect)):
        return made(INCONCLUSIVE, f"machine unstable: the baseline's halves differ by {aa:+.1%}, as much as "
                                  f"the change ({change:+.1%})")  # fmt: skip
    significant = p_adj is not None and p_adj < alpha
    if significant and abs(change) >= min_effect:
        return made(FAIL if worse else IMPROVED, f"{change:+.1%} (adjusted p = {p_adj:.2g})")
    if worst < min_effect:
        return made(PASS, f"no regression of {min_effect:.0%} or more (worst case {worst:+.1%})"
                    if worse or worst > 0 else "no regression")  # fmt: skip
    return made(INCONCLUSIVE, f"the interval reaches a {worst:.1%} regression; this session detects ≥ {mde:.1%}")


def _moved_controls(controls: Sequence[SeriesValues]) -> list[str]:
    moved = []
    for c in controls:
        values = [v for v in (*c.baseline, *c.candidate) if v is not None]
        if values and min(values) > 0 and max(values) / min(values) - 1 > CONTROL_TOLERANCE:
            moved.append(f"control {c.name} moved between blocks ({min(values):.4g} to {max(values):.4g})")
    return moved


def _adjust_by_direction(series: Sequence[SeriesValues], tests: Sequence[_Test]) -> list[float | None]:
    """Benjamini–Hochberg within each direction: series that got worse are adjusted among themselves (the
    others count as p = 1), and likewise the series that got better. A session's verdict is FAIL on a single
    regressed series, so a regression must be supported by other regressions, never by improvements: under
    one BH over all series, twenty real improvements would loosen the threshold enough that a noisy startup
    phase moving the other way becomes a false FAIL."""
    worse = [t.d is not None and ((t.d < 0) if s.higher_is_better else (t.d > 0))
             for s, t in zip(series, tests, strict=True)]  # fmt: skip
    ps = [t.p for t in tests]
    among_worse = benjamini_hochberg([p if w or p is None else 1.0 for p, w in zip(ps, worse, strict=True)])
    among_better = benjamini_hochberg([1.0 if w and p is not None else p for p, w in zip(ps, worse, strict=True)])
    return [mw if w else mb for mw, mb, w in zip(among_worse, among_better, worse, strict=True)]


def benjamini_hochberg(ps: Sequence[float | None]) -> list[float | None]:
    """Benjamini–Hochberg adjusted p values (false discovery rate over the given p values; None stays None)."""
    from scipy.stats import false_discovery_control  # SciPy loads in ~0.3 s: only when a session is judged

    given = [(i, p) for i, p in enumerate(ps) if p is not None]
    out = list(ps)
    if given:
        for (i, _), adjusted in zip(given, false_discovery_control([p for _, p in given]), strict=True):
            out[i] = float(adjusted)
    return out


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


# --- Student's t ------------------------------------------------------------------------------------------


def t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom."""
    from scipy.special import stdtr

    return float(stdtr(df, -t))


@functools.cache
def t_ppf(q: float, df: int) -> float:
    """The q quantile of Student's t (q in (0, 1))."""
    from scipy.special import stdtrit

    return float(stdtrit(df, q))
