"""Startup phases from an engine's log. Pure: takes (seconds since spawn, line) pairs and patterns.

Two kinds of numbers come out, both in seconds:
- durations the engine reports itself ("Loading weights took 0.52 seconds") under the phase's name;
- marks `at_<name>`: when a milestone line arrived, measured by perfci from the spawn (the reader stamps
  each line on receipt), so the time no log line reports — imports, process spawning — becomes visible as
  `unreported` = ready - (sum of reported phases).
Wording drifts between engine versions: every pattern is tolerant, the first match of a phase wins for
durations, and unknown lines are simply kept in the log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Pattern:
    phase: str
    regex: re.Pattern[str]
    # "duration": group 1 is seconds; "mark": the line's arrival time is the mark `at_<phase>`.
    kind: str = "duration"


def duration(phase: str, regex: str) -> Pattern:
    return Pattern(phase, re.compile(regex, re.IGNORECASE), "duration")


def mark(phase: str, regex: str) -> Pattern:
    return Pattern(phase, re.compile(regex, re.IGNORECASE), "mark")


@dataclass(slots=True)
class Phases:
    values: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def parse(lines: Iterable[tuple[float, str]], patterns: Sequence[Pattern]) -> Phases:
    out = Phases()
    for at, line in lines:
        for p in patterns:
            m = p.regex.search(line)
            if not m:
                continue
            if p.kind == "mark":
                out.values.setdefault(f"at_{p.phase}", round(at, 3))
            else:
                out.values.setdefault(p.phase, _seconds(m))
            out.lines.append(line.rstrip())
    return out


def _seconds(m: re.Match[str]) -> float:
    """Group 'ms' if the pattern has one (milliseconds), else group 1 (seconds)."""
    if "ms" in m.re.groupindex and m.group("ms") is not None:
        return float(m.group("ms")) / 1000
    return float(m.group(1))


def finish(
    phases: Phases, *, additive: Iterable[str | tuple[str, ...]], ready_s: float | None, first_token_s: float | None
) -> dict[str, float]:
    """Add perfci's own marks (health OK, first token) and the time no log line accounts for.
    `additive` names the engine's reported phases that do not overlap (an umbrella timing such as vLLM's
    "init engine" contains compile and graph capture, so only one of them may count); a tuple lists
    alternatives, of which the first present counts (the same phase logged differently across versions)."""
    values = dict(phases.values)
    if ready_s is not None:
        values["at_health_ok"] = round(ready_s, 3)
        reported = sum(_first_present(values, k) for k in additive)
        values["unreported"] = round(max(ready_s - reported, 0.0), 3)
    if first_token_s is not None:
        values["first_token"] = round(first_token_s, 3)
    return values


def _first_present(values: dict[str, float], names: str | tuple[str, ...]) -> float:
    for name in (names,) if isinstance(names, str) else names:
        if name in values:
            return values[name]
    return 0.0
