from __future__ import annotations

import itertools

import pytest

from perfci.errors import ConfigError, PerfciError
from perfci.measure.loadgen.sweep import sweep_rates


def test_evenly_spaced_strictly_between():
    assert sweep_rates(1.0, 5.0, 3) == pytest.approx([2.0, 3.0, 4.0])
    assert sweep_rates(2.0, 4.0, 1) == [3.0]
    rates = sweep_rates(0.7, 13.1, 10)
    assert 0.7 < rates[0] and rates[-1] < 13.1
    gaps = [b - a for a, b in itertools.pairwise(rates)]
    assert gaps == pytest.approx([gaps[0]] * 9)
    assert rates[0] - 0.7 == pytest.approx(gaps[0]) and 13.1 - rates[-1] == pytest.approx(gaps[0])


@pytest.mark.parametrize("throughput", [3.0, 2.0])
def test_no_range_when_throughput_does_not_exceed_synchronous(throughput):
    with pytest.raises(PerfciError, match=r"throughput rate \(.*\) is not above the synchronous rate"):
        sweep_rates(3.0, throughput, 4)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="number of rates"):
        sweep_rates(1, 2, 0)
    with pytest.raises(PerfciError, match="synchronous rate must be a positive"):
        sweep_rates(0, 2, 2)
