"""What does sampling an engine with py-spy cost it? The same point served with and without py-spy attached.

The sim engine made CPU-bound (`step_cpu_ms`: each scheduler step spends that much CPU in the server's own
Python, as an engine's scheduling overhead does), one fresh start per measurement, alternating "plain" and
"sampled" (py-spy `record --subprocesses --format raw --rate 100`, exactly as `perfci profile` runs it). Printed:
the median request rate and TPOT p50 of each arm, and the relative change. Python-bound work is where py-spy
costs most (it reads the interpreter's memory while the process is paused), so this is an upper bound for an
engine whose time goes to native kernels.

    .venv/bin/python benchmarks/explain_overhead.py --pairs 6
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from perfci import config
from perfci.measure import runner
from perfci.measure.engines import sim
from perfci.verdicts import explain

SUITE = """
name = "overhead"
[[models]]
name = "tiny-llama"
source = "perfci:tiny-llama"
[[workloads]]
name = "short"
prompt_tokens = 16
output_tokens = 64
load = { concurrency = [4] }
[run]
requests = 48
warmup_requests = 2
[sim]
decode_ms_per_token = 2.0
step_cpu_ms = 2.0
startup_s = 0
"""


def measure(suite: config.Suite, target: runner.Target, work: Path, sampled: bool) -> dict:
    plan = explain.find_point(suite, "short/c=4")
    with runner.serving(suite=suite, target=target, model=plan.model, workdir=work) as (server, served):
        spy = None
        if sampled:
            argv = explain.py_spy_sampler().argv(server.pid, work / "stacks.txt", explain.RATE_HZ)
            spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(explain.ATTACH_S)  # both arms wait alike
        point = runner.measure_point(suite=suite, target=target, plan=plan, server=server, served=served)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
    m = point["metrics"]
    return {"request_rate": m["request_rate"], "tpot_p50": m["tpot_ms"]["p50"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "overhead.toml"
        path.write_text(SUITE)
        suite = config.load_suite(str(path))
        target = runner.Target(engine=sim.SimEngine(), build_key="sim")
        arms: dict[str, list[dict]] = {"plain": [], "sampled": []}
        for i in range(args.pairs):
            order = ("plain", "sampled") if i % 2 == 0 else ("sampled", "plain")
            for arm in order:
                arms[arm].append(measure(suite, target, Path(tmp) / f"{i}-{arm}", arm == "sampled"))
    print("| arm | request rate (median) | TPOT p50 (median, ms) |\n|---|---|---|")
    med = {arm: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for arm, rows in arms.items()}
    for arm, m in med.items():
        print(f"| {arm} ({len(arms[arm])} starts) | {m['request_rate']:.2f}/s | {m['tpot_p50']:.2f} |")
    change = {k: med["sampled"][k] / med["plain"][k] - 1 for k in med["plain"]}
    print(f"\nsampled vs plain: request rate {change['request_rate']:+.1%}, TPOT p50 {change['tpot_p50']:+.1%}")


if __name__ == "__main__":
    main()
