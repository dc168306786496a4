"""Arrival schedules for open-loop rate levels, precomputed from a seeded RNG.

Gaps follow `vllm bench serve`: Gamma(shape=burstiness, scale=1/(rate*burstiness)), so the mean gap is
1/rate for every burstiness; burstiness 1 is a Poisson process, below 1 burstier, above 1 more regular. As
there, the drawn gaps are then scaled so that the schedule spans exactly its nominal length, (n - 1) / rate:
unscaled, the realised rate of n requests strays from `rate` by about 1/sqrt(n) (±16% for 40 requests), and
an open-loop point's throughput with it, from seed to seed. For Poisson arrivals the scaled schedule is
exactly a Poisson process given its count: the arrivals between the first and the last are uniform.
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
    offsets = list(accumulate((rng.gammavariate(shape, scale) for _ in range(n - 1)), initial=0.0))
    if offsets[-1] > 0:  # n > 1, unless every gap underflowed to 0
        stretch = (n - 1) / rate / offsets[-1]
        offsets = [t * stretch for t in offsets]
    return offsets
