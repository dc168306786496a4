"""The rates of a sweep: guidellm's synchronous -> throughput -> constant rates evenly spaced between."""

from __future__ import annotations

import math

from perfci.errors import ConfigError, PerfciError


def sweep_rates(synchronous_rate: float, throughput_rate: float, n: int) -> list[float]:
    """n constant request rates evenly spaced strictly between the synchronous and the throughput rate.

    Both rates are measured (requests/s of the synchronous and the max-throughput point); the range
    between them is where latency trades against load.
    """
    if n < 1:
        raise ConfigError(f"sweep: number of rates must be >= 1, got {n}")
    for name, rate in (("synchronous", synchronous_rate), ("throughput", throughput_rate)):
        if not (math.isfinite(rate) and rate > 0):
            raise PerfciError(f"sweep: measured {name} rate must be a positive number of requests/s, got {rate!r}")
    if throughput_rate <= synchronous_rate:
        raise PerfciError(
            f"sweep: the throughput rate ({throughput_rate:.4g} req/s) is not above the synchronous rate "
            f"({synchronous_rate:.4g} req/s): the server did not scale with concurrency, so there is no rate "
            "range to sweep"
        )
    step = (throughput_rate - synchronous_rate) / (n + 1)
    return [synchronous_rate + step * k for k in range(1, n + 1)]
