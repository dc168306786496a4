"""Where did the time go: sampled stacks of two builds -> the functions and modules whose time per request grew
or shrank, each with a test that holds the false-discovery rate over thousands of functions. Pure: data in,
data out (`perfci.verdicts.explain` does the profiling and the I/O).

Unit of replication: one profile, a fresh start of the engine serving one point's load. A function's value in
a profile is its time per request: samples x sampling interval / requests served while sampling. Each
function's samples are tested between builds with a count model whose start-to-start dispersion is shrunk
toward the one all functions share (`moderated_tests`), and the p values of one table (function self time,
function inclusive time, module time) are adjusted together with Benjamini–Hochberg. Why not a permutation
test across profiles: with K profiles per build it cannot give a p value below 1 / C(2K, K) (0.05 at K = 3,
0.008 at K = 5), so after adjusting for thousands of functions nothing could ever be named; a plain t test per
function has 2 to 4 degrees of freedom at K = 3 and fails the same way. Functions with too few samples across
all profiles are not tested (a filter blind to which build a profile came from, so it keeps the adjustment
valid) and are reported as a count.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from perfci.verdicts.abstats import benjamini_hochberg, t_ppf, t_sf

# Below this many samples across all profiles of both builds a function is not tested: its values are mostly
# zeros and a t test on them would be dominated by discreteness, not time.
MIN_SAMPLES = 10
FDR = 0.05
# Weight, in degrees of freedom, of the dispersion common to all functions against a function's own.
PRIOR_DF = 4.0
# Functions with at least this many samples estimate the common dispersion (fewer: mostly Poisson noise).
COMMON_MIN_SAMPLES = 50
CI_LEVEL = 0.95
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

Stacks = Mapping[str, int]  # "frame;frame;…" (root first) -> samples


@dataclass(frozen=True)
class Profile:
    """One fresh start's samples: per process role, collapsed stacks with py-spy frames ("func (file:line)")."""

    requests: int
    interval_ms: float
    roles: Mapping[str, Stacks]


@dataclass
class Row:
    """One function (or module) between the builds: ms per request before and after, share of all sampled time
    per request, the difference with its confidence interval, p and q."""

    name: str
    module: str
    role: str
    before_ms: float
    after_ms: float
    delta_ms: float
    ci_low: float
    ci_high: float
    share_before: float
    share_after: float
    p: float
    q: float | None = None
    before: list[float] = field(default_factory=list)
    after: list[float] = field(default_factory=list)


@dataclass
class Table:
    """One family of tests: every tested row, the BH-significant grown and shrunk names, and what was not tested."""

    kind: str  # function-self | function-inclusive | module
    rows: list[Row]
    untested: int

    def grown(self, fdr: float = FDR) -> list[Row]:
        return sorted((r for r in self.rows if r.q is not None and r.q <= fdr and r.delta_ms > 0),
                      key=lambda r: -r.delta_ms)  # fmt: skip

    def shrunk(self, fdr: float = FDR) -> list[Row]:
        return sorted((r for r in self.rows if r.q is not None and r.q <= fdr and r.delta_ms < 0),
                      key=lambda r: r.delta_ms)  # fmt: skip


@dataclass
class Explanation:
    baseline_profiles: int
    candidate_profiles: int
    total_before_ms: float
    total_after_ms: float
    roles: dict[str, tuple[float, float]]  # role -> (ms/request before, after)
    functions: Table
    inclusive: Table
    modules: Table
    renamed: dict[str, str]  # candidate name -> baseline name it was matched to
    fdr: float = FDR
    speed: list[float] = field(default_factory=list)  # per profile, baseline's first: `speed_factors`

    @property
    def differs(self) -> bool:
        return any(t.grown(self.fdr) or t.shrunk(self.fdr) for t in (self.functions, self.inclusive, self.modules))

    def as_dict(self, *, top: int = 20) -> dict:
        def rows(rs: list[Row]) -> list[dict]:
            return [{k: v for k, v in asdict(r).items() if k not in ("before", "after")} for r in rs[:top]]

        return {
            "baseline_profiles": self.baseline_profiles, "candidate_profiles": self.candidate_profiles,
            "fdr": self.fdr, "differs": self.differs,
            "total_ms_per_request": {"before": self.total_before_ms, "after": self.total_after_ms},
            "roles": {r: {"before": b, "after": a} for r, (b, a) in self.roles.items()},
            "grown": rows(self.functions.grown(self.fdr)), "shrunk": rows(self.functions.shrunk(self.fdr)),
            "grown_inclusive": rows(self.inclusive.grown(self.fdr)),
            "shrunk_inclusive": rows(self.inclusive.shrunk(self.fdr)),
            "grown_modules": rows(self.modules.grown(self.fdr)), "shrunk_modules": rows(self.modules.shrunk(self.fdr)),
            "tested": {t.kind: len(t.rows) for t in (self.functions, self.inclusive, self.modules)},
            "untested": {t.kind: t.untested for t in (self.functions, self.inclusive, self.modules)},
            "renamed": self.renamed, "speed_factors": self.speed,
        }  # fmt: skip


def frame_name(frame: str) -> tuple[str, str]:
    """A py-spy frame -> (module-qualified function name, module). Line numbers are dropped so an edit elsewhere
    in a function does not make it a new one: "step (vllm/v1/engine/core.py:661)" -> ("vllm.v1.engine.core:step",
    "vllm.v1.engine.core")."""
    m = _FRAME.match(frame)
    if m is None:
        return frame, frame
    path = m["file"].replace("\\", "/")
    if path.endswith(".py"):
        path = path[:-3]
    for marker in ("site-packages/", "dist-packages/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            path = path.split("/", 1)[1] if marker == "lib/python3." and "/" in path else path
    module = path.strip("/").replace("/", ".").removesuffix(".__init__") or "?"
    return f"{module}:{m['func']}", module


def match_names(before: Iterable[str], after: Iterable[str]) -> dict[str, str]:
    """Functions renamed or moved between builds: a module-qualified name found in one build only is matched to
    the one name in the other build with the same bare function name, when that is unambiguous on both sides."""
    before, after = set(before), set(after)
    only_before, only_after = before - after, after - before

    def by_bare(names: set[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for n in names:
            out[n.rsplit(":", 1)[-1]].append(n)
        return out

    gone, new = by_bare(only_before), by_bare(only_after)
    return {new[b][0]: gone[b][0] for b in new if len(new[b]) == 1 and len(gone.get(b, [])) == 1}


@dataclass
class _Counts:
    self_: Counter = field(default_factory=Counter)
    incl: Counter = field(default_factory=Counter)
    module: Counter = field(default_factory=Counter)
    role_of: Counter = field(default_factory=Counter)  # (function, role) -> samples
    roles: Counter = field(default_factory=Counter)
    total: int = 0


def _count(profile: Profile) -> _Counts:
    c = _Counts()
    for role, stacks in profile.roles.items():
        for stack, n in stacks.items():
            names = [frame_name(f) for f in stack.split(";") if f]
            if not names:
                continue
            c.total += n
            c.roles[role] += n
            leaf, leaf_module = names[-1]
            c.self_[leaf] += n
            c.module[leaf_module] += n
            for name in {name for name, _ in names}:  # once per stack, however deep the recursion
                c.incl[name] += n
                c.role_of[name, role] += n
    return c


def _rename(counter: Counter, renamed: Mapping[str, str]) -> Counter:
    out: Counter = Counter()
    for k, v in counter.items():
        out[renamed.get(k, k)] += v
    return out


def explain(baseline: Sequence[Profile], candidate: Sequence[Profile], *, fdr: float = FDR,
            min_samples: int = MIN_SAMPLES, ci_level: float = CI_LEVEL) -> Explanation:  # fmt: skip
    """Compare two builds' profiles (at least 2 each; a ValueError otherwise)."""
    if len(baseline) < 2 or len(candidate) < 2:
        raise ValueError(f"need at least 2 profiles per build (got {len(baseline)} and {len(candidate)})")
    for p in (*baseline, *candidate):
        if p.requests <= 0:
            raise ValueError("a profile served no requests: time per request is undefined")
    bc, cc = [_count(p) for p in baseline], [_count(p) for p in candidate]
    renamed = match_names(set().union(*(c.incl for c in bc)), set().union(*(c.incl for c in cc)))
    for c in cc:
        c.self_, c.incl = _rename(c.self_, renamed), _rename(c.incl, renamed)
        c.role_of = Counter({(renamed.get(k, k), r): n for (k, r), n in c.role_of.items()})

    profiles = (*baseline, *candidate)
    everyone = sorted(set().union(*(c.self_ for c in (*bc, *cc))))
    speed = speed_factors(np.array([[c.self_[n] for c in (*bc, *cc)] for n in everyone], dtype=float).reshape(
        len(everyone), -1), np.array([p.requests for p in profiles], dtype=float))  # fmt: skip
    factor = dict(zip(map(id, profiles), speed, strict=True))

    def per_request(p: Profile, n: float) -> float:
        return n * p.interval_ms / p.requests / factor[id(p)]

    # Samples per ms of time per request (at the profiles' common speed): a count over this is ms per request.
    exposure = np.array([p.requests * factor[id(p)] / p.interval_ms for p in profiles])

    totals_b = [per_request(p, c.total) for p, c in zip(baseline, bc, strict=True)]
    totals_c = [per_request(p, c.total) for p, c in zip(candidate, cc, strict=True)]
    tb, tc = _mean(totals_b), _mean(totals_c)
    role_of: Counter = Counter()
    for c in (*bc, *cc):
        role_of.update(c.role_of)
    main_role: dict[str, str] = {}
    for (name, role), _ in sorted(role_of.items(), key=lambda kv: -kv[1]):
        main_role.setdefault(name, role)

    def table(kind: str, pick) -> Table:  # noqa: ANN001 (a field getter)
        names = sorted(set().union(*(pick(c) for c in (*bc, *cc))))
        counts = np.array([[pick(c)[n] for c in (*bc, *cc)] for n in names], dtype=float).reshape(len(names), -1)
        keep = counts.sum(axis=1) >= min_samples
        tests = moderated_tests(counts[keep], exposure, len(bc), ci_level=ci_level)
        rows = []
        for name, t in zip([n for n, k in zip(names, keep, strict=True) if k], tests, strict=True):
            module = name if kind == "module" else name.rsplit(":", 1)[0]
            rows.append(Row(name=name, module=module, role="" if kind == "module" else main_role.get(name, ""),
                            share_before=t["before_ms"] / tb if tb else 0.0,
                            share_after=t["after_ms"] / tc if tc else 0.0, **t))  # fmt: skip
        for row, q in zip(rows, benjamini_hochberg([r.p for r in rows]), strict=True):
            row.q = q
        return Table(kind=kind, rows=rows, untested=int((~keep).sum()))

    roles = sorted(set().union(*(c.roles for c in (*bc, *cc))))
    return Explanation(
        baseline_profiles=len(baseline), candidate_profiles=len(candidate), total_before_ms=float(tb),
        total_after_ms=float(tc),
        roles={r: (float(_mean([per_request(p, c.roles[r]) for p, c in zip(baseline, bc, strict=True)])),
                   float(_mean([per_request(p, c.roles[r]) for p, c in zip(candidate, cc, strict=True)])))
               for r in roles},
        functions=table("function-self", lambda c: c.self_),
        inclusive=table("function-inclusive", lambda c: c.incl),
        modules=table("module", lambda c: c.module),
        renamed=renamed, fdr=fdr, speed=[float(f) for f in speed],
    )  # fmt: skip


def speed_factors(counts: np.ndarray, requests: np.ndarray, *, min_functions: int = 5) -> np.ndarray:
    """How much slower each profile's whole engine ran than the others, from functions x profiles self-sample
    `counts`: per profile, the median over functions of its time per request relative to that function's
    geometric mean over all profiles (the median-of-ratios size factors of DESeq), scaled to a geometric mean
    of 1. A sampler sees wall time of threads that are not idle, so on a loaded machine every function of a
    start looks slower by the same factor; dividing it out keeps that common factor from passing for a change.
    A median over hundreds of functions, so the few a build really changed do not move it; only functions
    sampled in every profile take part. Fewer than `min_functions` of those: all 1."""
    per_request = counts / requests
    usable = (counts > 0).all(axis=1) & (counts.sum(axis=1) >= COMMON_MIN_SAMPLES)
    if usable.sum() < min_functions:
        return np.ones(counts.shape[1])
    logs = np.log(per_request[usable])
    factors = np.median(logs - logs.mean(axis=1, keepdims=True), axis=0)
    return np.exp(factors - factors.mean())


def moderated_tests(counts: np.ndarray, exposure: np.ndarray, n_before: int, *, ci_level: float = CI_LEVEL,
                    prior_df: float = PRIOR_DF) -> list[dict]:  # fmt: skip
    """Test every row of `counts` (functions x profiles; the first `n_before` profiles are the baseline's) for a
    change in its rate per unit of `exposure` (ms per request).

    A function's samples in a profile are counted events whose mean is its rate times the exposure and whose
    variance is mean + phi * mean^2: Poisson sampling plus start-to-start variation (phi, the squared
    coefficient of variation between starts). phi is estimated per function from the spread within each build
    and shrunk toward the dispersion common to all functions (PRIOR_DF, as limma and edgeR do): with 3 profiles
    per build a function's own spread is too noisy to trust alone, and the common one is estimated from
    thousands. The test is on the log rate ratio, its variance taken at the pooled rate (a score test, so a
    function absent from one build is still tested), referred to Student's t with the moderated degrees of
    freedom. Each row's dict: before, after (ms/request), delta_ms and its CI, p, and the per-profile values."""
    if counts.size == 0:
        return []
    groups = [slice(0, n_before), slice(n_before, counts.shape[1])]
    sizes = [n_before, counts.shape[1] - n_before]
    num = np.zeros(counts.shape[0])
    den = np.zeros(counts.shape[0])
    for g, n in zip(groups, sizes, strict=True):
        c, e = counts[:, g], exposure[g]
        mu = c.sum(axis=1, keepdims=True) / e.sum() * e
        num += ((c - mu) ** 2 - mu).sum(axis=1) * n / (n - 1)
        den += (mu**2).sum(axis=1)
    resid_df = counts.shape[1] - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.where(den > 0, np.maximum(num / den, 0.0), 0.0)
    common = _common_dispersion(own[counts.sum(axis=1) >= COMMON_MIN_SAMPLES], resid_df)
    phi = (prior_df * common + resid_df * own) / (prior_df + resid_df)
    df = prior_df + resid_df
    quantile = t_ppf(0.5 + ci_level / 2, df)
    out = []
    pooled_rate = counts.sum(axis=1) / exposure.sum()
    for i in range(counts.shape[0]):
        rates, var_log, var_rate = [], 0.0, 0.0
        for g in groups:
            c, e = counts[i, g], exposure[g]
            rates.append((c.sum() + 0.5) / e.sum())  # + 0.5: a function absent from a build has a finite log
            mu0 = pooled_rate[i] * e
            var_log += (mu0 + phi[i] * mu0**2).sum() / max(mu0.sum(), 0.5) ** 2
            mu = c.sum() / e.sum() * e
            var_rate += (mu + phi[i] * mu**2).sum() / e.sum() ** 2
        t = math.log(rates[1] / rates[0]) / math.sqrt(var_log) if var_log > 0 else 0.0
        before, after = counts[i, groups[0]].sum() / exposure[groups[0]].sum(), counts[i, groups[1]].sum() / \
            exposure[groups[1]].sum()
        delta, half = after - before, quantile * math.sqrt(var_rate)
        out.append({"before_ms": float(before), "after_ms": float(after), "delta_ms": float(delta),
                    "ci_low": float(delta - half), "ci_high": float(delta + half),
                    "p": min(1.0, 2 * t_sf(abs(t), df)),
                    "before": [float(v) for v in counts[i, groups[0]] / exposure[groups[0]]],
                    "after": [float(v) for v in counts[i, groups[1]] / exposure[groups[1]]]})  # fmt: skip
    return out


def _common_dispersion(own: np.ndarray, resid_df: int) -> float:
    """The dispersion shared by all functions: the median of their own estimates, which are right-skewed
    (about phi * chi2(d) / d): divided by the median of chi2(d) / d (Wilson–Hilferty), so it estimates the mean.
    A median, so the few functions a change really moved do not inflate it."""
    if own.size == 0:
        return 0.0
    d = max(resid_df, 1)
    return float(np.median(own)) / (1 - 2 / (9 * d)) ** 3


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _var(xs: Sequence[float]) -> float:
    mu = _mean(xs)
    return sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)
