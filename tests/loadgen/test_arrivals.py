from __future__ import annotations

import itertools
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfci.errors import ConfigError
from perfci.measure.loadgen.arrivals import arrival_offsets

rates = st.floats(min_value=0.01, max_value=1000)
bursts = st.floats(min_value=0.1, max_value=10)
processes = st.sampled_from(["constant", "poisson", "gamma"])


@given(st.integers(min_value=0, max_value=300), rates, processes, bursts, st.integers())
def test_monotonic_from_zero_and_seeded(n, rate, process, burstiness, seed):
    offsets = arrival_offsets(n, rate=rate, process=process, burstiness=burstiness, seed=seed)
    assert len(offsets) == n
    assert offsets[:1] in ([], [0.0])
    assert all(b >= a for a, b in itertools.pairwise(offsets))
    assert offsets == arrival_offsets(n, rate=rate, process=process, burstiness=burstiness, seed=seed)


@settings(max_examples=25)
@given(rates, st.sampled_from(["poisson", "gamma"]), bursts, st.integers(min_value=0, max_value=2**32))
def test_mean_gap_is_one_over_rate(rate, process, burstiness, seed):
    offsets = arrival_offsets(20_000, rate=rate, process=process, burstiness=burstiness, seed=seed)
    mean_gap = offsets[-1] / (len(offsets) - 1)
    # Gap std is mean/sqrt(shape); with 20k gaps and shape >= 0.1 the mean is within 2.3% at 1 sigma.
    assert mean_gap == pytest.approx(1 / rate, rel=0.12)


@given(st.integers(min_value=2, max_value=300), rates, st.sampled_from(["poisson", "gamma"]), bursts, st.integers())
def test_schedule_spans_its_nominal_length(n, rate, process, burstiness, seed):
    # As `vllm bench serve`: whatever the seed, n requests arrive at exactly `rate` over the schedule, so an
    # open-loop point's throughput does not wander with the draw.
    offsets = arrival_offsets(n, rate=rate, process=process, burstiness=burstiness, seed=seed)
    assert offsets[-1] == pytest.approx((n - 1) / rate, rel=1e-9)


def test_burstiness_sets_the_spread_of_gaps():
    def cv(burstiness):
        offsets = arrival_offsets(20_000, rate=5, process="gamma", burstiness=burstiness, seed=1)
        gaps = [b - a for a, b in itertools.pairwise(offsets)]
        return statistics.stdev(gaps) / statistics.mean(gaps)

    # Gamma(shape k): coefficient of variation 1/sqrt(k).
    assert cv(0.25) == pytest.approx(2.0, rel=0.1)
    assert cv(1.0) == pytest.approx(1.0, rel=0.05)
    assert cv(4.0) == pytest.approx(0.5, rel=0.05)


def test_poisson_ignores_burstiness_and_equals_gamma_shape_one():
    a = arrival_offsets(50, rate=3, process="poisson", burstiness=7, seed=5)
    assert a == arrival_offsets(50, rate=3, process="gamma", burstiness=1, seed=5)


def test_constant_and_seeds():
    assert arrival_offsets(4, rate=2, process="constant") == [0.0, 0.5, 1.0, 1.5]
    one, two = (arrival_offsets(10, rate=2, process="poisson", seed=s) for s in (1, 2))
    assert one != two


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": -1, "rate": 1, "process": "poisson"}, "count must be >= 0"),
        ({"n": 3, "rate": 0, "process": "poisson"}, "rate must be a positive"),
        ({"n": 3, "rate": float("inf"), "process": "poisson"}, "rate must be a positive"),
        ({"n": 3, "rate": 1, "process": "gamma", "burstiness": 0}, "burstiness must be positive"),
        ({"n": 3, "rate": 1, "process": "bursty"}, "unknown arrival process 'bursty'"),
    ],
)
def test_bad_input(kwargs, message):
    n = kwargs.pop("n")
    with pytest.raises(ConfigError, match=message):
        arrival_offsets(n, **kwargs)
