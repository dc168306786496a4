"""Arrival schedules for open-loop rate levels, precomputed from a seeded RNG.

Gaps follow `vllm bench serve`: Gamma(shape=burstiness, scale=1/(rate*burstiness)), so the mean gap is
1/rate for every burstiness; burstiness 1 is a Poisson process, below 1 burstier, above 1 more regular.
"""

from __future__ import annotations

import math
import random
from itertools import accumulate
from typing import Literal

from perfci.errors import ConfigError

Process = Literal["constant", "poisson", "gamma"]


def arrival_offsets(n: int, *, rate: float, process: Process, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """Send times of n requests in seconds from the start; the first request goes at 0."""
    if n < 0:
        raise ConfigError(f"arrival_offsets: request count must be >= 0, got {n}")
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigError(f"arrival_offsets: rate must be a positive number of requests/s, got {rate!r}")
    if not (math.isfinite(burstiness) and burstiness > 0):
        raise ConfigError(f"arrival_offsets: burstiness must be positive, got {burstiness!r}")
    if n == 0:
        return []
    if process == "constant":
        return [i / rate for i in range(n)]
    if process == "poisson":
        shape = 1.0
    elif process == "gamma":
        shape = burstiness
    else:
        raise ConfigError(f"arrival_offsets: unknown arrival process {process!r} (constant, poisson or gamma)")
    rng = random.Random(seed)
    scale = 1.0 / (rate * shape)
    gaps = (rng.gammavariate(shape, scale) for _ in range(n - 1))
    return list(accumulate(gaps, initial=0.0))
