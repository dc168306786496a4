"""perfci's statistics on SciPy's distributions give what the hand-written ones gave: p values, intervals,
minimum detectable effects, verdicts and densities on fixed inputs, recorded before the change
(tests/fixtures/stats/golden.json, written by record_golden.py beside it)."""

import json
from pathlib import Path

import numpy as np
import pytest

from perfci.bisect import core as bisect
from perfci.verdicts import abstats, detect

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "stats" / "golden.json").read_text())


def test_t_tail_probabilities_match_the_hand_written_ones():
    for t, dof, p in GOLDEN["t_two_sided"]:
        assert detect.t_two_sided(t, dof) == pytest.approx(p, rel=1e-9, abs=1e-15), (t, dof)
    for t, dof, p in GOLDEN["t_sf"]:
        assert abstats.t_sf(t, dof) == pytest.approx(p, rel=1e-9, abs=1e-15), (t, dof)


def test_t_quantiles_match_the_hand_written_bisection():
    for q, dof, x in GOLDEN["t_ppf"]:
        assert abstats.t_ppf(q, dof) == pytest.approx(x, rel=1e-9, abs=1e-12), (q, dof)


def test_t_density_of_the_bisect_posterior_matches():
    y = np.linspace(-5, 5, 11)
    for dof, values in GOLDEN["t_density"]:
        got = bisect._t_density(y, np.array(0.5), np.array(1.5), dof)
        assert got == pytest.approx(values, rel=1e-12), dof


def test_benjamini_hochberg_adjusted_p_values_and_rejections_match():
    for ps, adjusted in GOLDEN["bh_adjusted"]:
        assert abstats.benjamini_hochberg(ps) == pytest.approx(adjusted, rel=1e-12)
    for ps, flags in GOLDEN["bh_flags"]:
        assert detect.benjamini_hochberg(ps, q=0.05) == flags


def test_ab_judgements_match_p_values_intervals_mde_and_verdicts():
    for series, expected in GOLDEN["judge"]:
        values = [abstats.SeriesValues(f"s{k}", "ttft_ms_p50", hib, tuple(b), tuple(c))
                  for k, (b, c, hib) in enumerate(series)]  # fmt: skip
        for got, (p, p_adj, low, high, mde, verdict) in zip(abstats.judge(values).series, expected, strict=True):
            assert (got.p, got.p_adjusted, got.low, got.high, got.mde) == pytest.approx(
                (p, p_adj, low, high, mde), rel=1e-9, abs=1e-15)
            assert got.verdict == verdict


def test_detect_compare_matches():
    for b, c, (p, low, high, rel, verdict) in GOLDEN["compare"]:
        v = detect.compare(b, c, higher_is_better=False)
        assert (v.pvalue, v.ci_low, v.ci_high, v.rel_change) == pytest.approx((p, low, high, rel), rel=1e-9)
        assert v.verdict == verdict


@pytest.mark.integration  # starts perfci as a process
def test_the_cli_starts_without_importing_scipy():
    """SciPy takes a noticeable time to load: it is imported where a distribution is first needed."""
    import subprocess
    import sys

    code = "import sys, perfci.cli.main; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_bisect_posterior_over_the_first_bad_candidate_matches():
    for ys, known, p_k, p_none in GOLDEN["posterior"]:
        prior = bisect._NoisePrior.known(known) if known else bisect._NoisePrior()
        post = bisect._posterior([np.log(np.asarray(y)) for y in ys], 1, prior)
        assert post.p_k.tolist() == pytest.approx(p_k, rel=1e-9, abs=1e-300)
        assert post.p_none == pytest.approx(p_none, rel=1e-9)
