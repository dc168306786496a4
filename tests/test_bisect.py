"""The pure bisect core against synthetic noisy histories: `measure` is a function of the candidate index."""

import math

import numpy as np
import pytest

from perfci.bisect.core import BisectResult, Trial, bisect, judge_step
from perfci.errors import BuildError, ConfigError, EngineError


def history(n: int, culprit: int, *, step: float, noise: float, seed: int, unbuildable=(), steps=()):
    """measure(i): 100 ms, times (1 + step) from `culprit` on (and each extra (index, step) in `steps`),
    with multiplicative log-normal noise; BuildError for `unbuildable` candidates. Counts its calls."""
    rng = np.random.default_rng(seed)
    calls: list[int] = []

    def measure(i: int) -> float:
        calls.append(i)
        if i in unbuildable:
            raise BuildError(f"candidate {i} does not build")
        level = 100.0 * (1 + step * (i >= culprit))
        for at, extra in steps:
            level *= 1 + extra * (i >= at)
        return level * math.exp(rng.normal(0, noise))

    measure.calls = calls
    return measure


@pytest.mark.parametrize("seed", range(6))
def test_finds_a_5_percent_step_under_2_percent_noise_in_64_candidates(seed):
    culprit = 7 + 9 * seed
    measure = history(64, culprit, step=0.05, noise=0.02, seed=seed)
    result = bisect(list(range(64)), measure, higher_is_better=False)
    assert result.outcome == "culprit" and result.culprit == culprit
    assert result.confidence >= 0.95 and result.trials == len(measure.calls) < 64
    assert result.regression is True and 0.02 < result.rel_change < 0.08
    probes = {p.index: p for p in result.probes}
    assert probes[culprit].verdict == "bad" and len(probes[culprit].samples) >= 2  # verified, not one lucky trial
    assert probes[culprit - 1].verdict == "good" or probes[culprit - 1].verdict == "untested"


def test_a_higher_is_better_drop_is_a_regression():
    measure = history(20, 11, step=-0.10, noise=0.01, seed=1)
    letters = "abcdefghijklmnopqrst"
    result = bisect(list(letters), lambda c: measure(letters.index(c)), higher_is_better=True)
    assert result.culprit == "l" and result.regression is True and result.rel_change < 0


def test_unbuildable_candidates_are_skipped_and_the_culprit_still_found():
    measure = history(32, 20, step=0.10, noise=0.01, seed=3, unbuildable={10, 15, 16, 18})
    result = bisect(list(range(32)), measure, higher_is_better=False)
    assert result.culprit == 20
    assert all(measure.calls.count(i) <= 1 for i in (10, 15, 16, 18))  # never tried twice
    assert {p.index for p in result.probes if p.verdict == "skipped"} <= {10, 15, 16, 18}


def test_an_unbuildable_culprit_leaves_an_ambiguous_range():
    measure = history(16, 9, step=0.10, noise=0.01, seed=4, unbuildable={8, 9})
    result = bisect(list(range(16)), measure, higher_is_better=False)
    assert result.outcome == "ambiguous" and result.culprit is None
    assert result.suspects == (8, 10)  # the step is at 8, 9 or 10: 7 measured good, 10 bad


def test_references_that_do_not_differ_stop_early_as_cannot_reproduce():
    measure = history(64, 1000, step=0.0, noise=0.02, seed=5)
    result = bisect(list(range(64)), measure, higher_is_better=False)
    assert result.outcome == "cannot-reproduce" and result.culprit is None
    assert result.trials <= 40


def test_a_two_step_regression_reports_both_steps():
    measure = history(64, 20, step=0.08, noise=0.01, seed=6, steps=[(45, 0.08)])
    result = bisect(list(range(64)), measure, higher_is_better=False)
    found = {result.culprit, *(o.culprit for o in result.others)}
    assert found == {20, 45}


def test_resuming_from_stored_trials_repeats_none_of_them():
    candidates = list(range(64))
    straight = bisect(candidates, history(64, 37, step=0.05, noise=0.02, seed=7), higher_is_better=False)

    stored: list[Trial] = []
    measure = history(64, 37, step=0.05, noise=0.02, seed=7)

    def killed_after_8(i: int) -> float:
        if len(stored) == 8:
            raise KeyboardInterrupt  # the runner dies mid-bisect
        return measure(i)

    with pytest.raises(KeyboardInterrupt):
        bisect(candidates, killed_after_8, higher_is_better=False, on_trial=stored.append)
    resumed = bisect(candidates, measure, higher_is_better=False, history=stored)
    assert len(measure.calls) == resumed.trials  # 8 before the kill + the rest, none twice
    assert (resumed.culprit, resumed.trials) == (straight.culprit, straight.trials)  # same noise, same path


def test_noise_free_values_and_non_positive_values():
    exact = bisect(list(range(10)), lambda i: 5.0 if i < 6 else 6.0, higher_is_better=False)
    assert exact.culprit == 6 and exact.confidence > 0.99
    rates = bisect(list(range(10)), lambda i: 0.0 if i < 3 else 0.5, higher_is_better=False)  # error rate
    assert rates.culprit == 3 and rates.rel_change == math.inf or rates.culprit == 3
    same = bisect(list(range(10)), lambda i: 5.0, higher_is_better=False)
    assert same.outcome == "cannot-reproduce"


def test_a_crashing_reference_gives_a_clear_error_not_a_culprit():
    def measure(i: int) -> float:
        if i == 0:
            raise EngineError("engine exited during startup")
        return 1.0

    result = bisect(list(range(8)), measure, higher_is_better=False, max_trials=10)
    assert result.outcome == "inconclusive" and result.culprit is None


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="good and a bad"):
        bisect([1], lambda c: 1.0, higher_is_better=False)
    with pytest.raises(ConfigError, match="confidence"):
        bisect([1, 2], lambda c: 1.0, higher_is_better=False, confidence=1.5)
    with pytest.raises(ConfigError, match="candidate 9"):
        bisect([1, 2], lambda c: 1.0, higher_is_better=False, history=[Trial(9, 1.0)])
    for noise in (0.0, 1.5):
        with pytest.raises(ConfigError, match="noise"):
            bisect([1, 2], lambda c: 1.0, higher_is_better=False, noise=noise)


def test_a_known_noise_keeps_a_few_tight_trials_from_naming_a_culprit():
    # Seven trials that scatter by 0.1% around a 3% step: alone they name candidate 8 at once. A metric known
    # to be noisier than that (3% per trial, from earlier runs) makes them say little; one known to be as
    # quiet as they are changes nothing.
    trials = [Trial(0, 100.0), Trial(15, 103.0), Trial(7, 100.1), Trial(8, 102.9), Trial(8, 103.0),
              Trial(0, 100.05), Trial(15, 103.1)]  # fmt: skip

    def replay(noise):
        return bisect(list(range(16)), lambda c: pytest.fail("replay only"), higher_is_better=False,
                      history=trials, max_trials=len(trials), noise=noise)  # fmt: skip

    assert (replay(None).outcome, replay(None).culprit) == ("culprit", 8)
    assert (replay(0.001).outcome, replay(0.001).culprit) == ("culprit", 8)
    noisy = replay(0.03)
    assert noisy.outcome == "inconclusive" and noisy.culprit is None and noisy.confidence < 0.95


def test_result_fields_are_the_stable_api():
    result = bisect(list(range(8)), history(8, 4, step=0.2, noise=0.01, seed=0), higher_is_better=False)
    assert isinstance(result, BisectResult)
    assert {"culprit", "confidence", "trials", "probes"} <= set(result.__dict__)
    assert {"samples", "verdict"} <= set(result.probes[0].__dict__)


def test_a_bisect_step_judges_the_median_against_the_threshold_in_the_metric_direction():
    latency = judge_step([12.0, 9.0, 30.0], threshold=10.0, higher_is_better=False)
    assert (latency.median, latency.good) == (12.0, False)  # one outlier either way does not decide
    assert judge_step([9.0, 10.0], threshold=10.0, higher_is_better=False).good  # on the threshold is good
    assert not judge_step([9.0, 10.0, 11.0], threshold=10.5, higher_is_better=True).good
    assert judge_step([9.0, 10.0], threshold=10.0, higher_is_better=True).summary("goodput") == \
        "goodput median 10 (9, 10): good against 10"
    with pytest.raises(ValueError, match="no trial values"):
        judge_step([], threshold=1.0, higher_is_better=True)
