"""Expand a suite into concrete points: model x workload x load level x repeat.

A sweep expands to synchronous, throughput, then N constant-rate levels whose rates are only known after
the first two are measured; those levels come out *pending* and the runner resolves them once per
(model, workload) so every repeat, and every build, measures the same rates.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

from perfci.config import Load, Model, Suite, Workload

LoadKind = Literal["synchronous", "concurrency", "rate", "throughput"]


@dataclass(frozen=True, slots=True)
class LoadLevel:
    kind: LoadKind
    value: float | None = None  # concurrency N, or requests/s; None for a pending sweep rate
    arrival: str | None = None
    burstiness: float | None = None
    max_concurrency: int | None = None
    sweep_slot: int | None = None  # k of a sweep's n rates (0-based), until resolved

    @property
    def pending(self) -> bool:
        return self.kind == "rate" and self.value is None

    @property
    def concurrency(self) -> int | None:
        """Closed-loop workers (None for open-loop rate levels, whose cap is max_concurrency)."""
        if self.kind == "synchronous":
            return 1
        if self.kind in ("concurrency", "throughput"):
            return int(self.value)
        return self.max_concurrency

    @property
    def label(self) -> str:
        if self.kind == "synchronous":
            return "sync"
        if self.kind == "concurrency":
            return f"c={int(self.value)}"
        if self.kind == "throughput":
            return "throughput"
        rate = "?" if self.value is None else f"{self.value:g}"
        shape = self.arrival if self.arrival != "gamma" else f"gamma(b={self.burstiness:g})"
        cap = f" max_c={self.max_concurrency}" if self.max_concurrency else ""
        return f"r={rate}/s {shape}{cap}"

    def record(self) -> dict:
        return {
            "kind": self.kind,
            "value": self.value,
            "arrival": self.arrival,
            "burstiness": self.burstiness,
            "max_concurrency": self.max_concurrency,
        }


@dataclass(frozen=True, slots=True)
class PointPlan:
    model: Model
    workload: Workload
    load: LoadLevel
    repeat: int

    @property
    def seed(self) -> int:
        """Distinct prompts per level and repeat (so an engine's prefix cache never serves a repeat), yet
        the same prompts for the same point of every build."""
        return zlib.crc32(f"{self.workload.seed}|{self.load.label}|{self.repeat}".encode())

    def resolved(self, rate: float) -> PointPlan:
        return replace(self, load=replace(self.load, value=rate, sweep_slot=None))


def load_levels(load: Load) -> list[LoadLevel]:
    levels: list[LoadLevel] = []
    if load.synchronous or load.sweep:
        levels.append(LoadLevel("synchronous"))
    if load.sweep:
        levels.append(LoadLevel("throughput", float(load.throughput_concurrency)))
    levels += [LoadLevel("concurrency", float(c)) for c in load.concurrency]
    rate = dict(arrival=load.arrival, burstiness=load.burstiness, max_concurrency=load.max_concurrency)
    levels += [LoadLevel("rate", r, **rate) for r in load.rate]
    # A sweep's constant rates: "constant" arrivals as guidellm's sweep.
    sweep = dict(arrival="constant", burstiness=None, max_concurrency=load.max_concurrency)
    levels += [LoadLevel("rate", None, sweep_slot=k, **sweep) for k in range(load.sweep or 0)]
    return levels


def expand(suite: Suite) -> list[PointPlan]:
    """Every point in run order: models outermost (one engine start each), repeats interleaved across load
    levels (so slow drift spreads over all levels instead of biasing the last repeat)."""
    return list(_points(suite))


def _points(suite: Suite) -> Iterator[PointPlan]:
    for model in suite.models:
        workloads = [w for w in suite.workloads if model in suite.models_for(w)]
        for repeat in range(suite.run.repeats):
            for workload in workloads:
                for level in load_levels(workload.load):
                    yield PointPlan(model, workload, level, repeat)

