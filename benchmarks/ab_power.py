"""How often does `perfci ab` say FAIL when nothing changed, and when the decode step is 5 % slower?

Two conditions on the sim engine, each `--runs` A/B sessions (`ab.run_ab`, the library behind `perfci ab`:
real engine starts, real HTTP, a real SQLite store), with the default number of blocks:

- A/A: `--baseline sim:a.toml --candidate sim:a-copy.toml`, two files holding the same latency model (one
  build, as the content hash says); any FAIL is a false alarm;
- A/B: `--candidate sim:b.toml`, the same model with `decode_ms_per_token` 5 % higher; FAIL is a detection.

The latency model has a between-start spread (`start_noise = 0.01`: each start draws one speed factor,
log-normal, 1 % relative SD), as a real engine's speed differs a little from one start to the next, and the
machine adds its own timing noise on top. Session i of either condition uses workload seed i, so both
conditions see the same requests. Printed: per condition, how many sessions ended in each verdict, the
FAIL share against its target, and the median MDE of the decode-latency series.

    .venv/bin/python benchmarks/ab_power.py                 # 2 x 40 sessions of 12 blocks: ~100 min
    .venv/bin/python benchmarks/ab_power.py --runs 10       # a quick look
    .venv/bin/python benchmarks/ab_power.py --also 8        # and each session's first 8 blocks judged alone
    # the same 80 sessions in four processes (the sim sleeps more than it computes):
    for c in aa ab; do for s in 0 20; do .venv/bin/python benchmarks/ab_power.py --condition $c --runs 20 \
        --first-seed $s > ab-$c-$s.md & done; done; wait
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from perfci import config, store
from perfci.store.records import RunRecord
from perfci.verdicts import ab

MODEL = "decode_ms_per_token = {decode}\nstart_noise = 0.01\nstartup_s = 0.1\n"
SUITE = """\
name = "ab-power"
description = "A/B power benchmark: one closed-loop point"

[[models]]
name = "tiny-llama"
source = "perfci:tiny-llama"

[[workloads]]
name = "short"
prompt_tokens = 32
output_tokens = 24
seed = {seed}
load = {{ concurrency = [4] }}

[run]
requests = 24
warmup_requests = 4

[startup]
caches = ["warm"]
"""
DECODE_MS = 15.0  # a GPU-like decode step: long against the scheduling jitter of a busy machine
TARGETS = {"A/A": ("no FAIL", 0.95), "A/B (+5% decode)": ("FAIL", 0.95)}


class Blocks:
    """Keeps each block's run record, so that the session's first blocks can be judged on their own."""

    def __init__(self) -> None:
        self.done: list[tuple[int, str, RunRecord]] = []

    def block_started(self, block: int, blocks: int, arm: str, build: str) -> None:
        pass

    def block_finished(self, block: int, record: RunRecord) -> None:
        self.done.append((block, ab.abba(block + 1)[-1], record))


def session(work: Path, candidate: str, seed: int, blocks: int, also: list[int]) -> dict[int, ab.Session]:
    """One session of `blocks` blocks, and its first n blocks judged as a session of n, for each n in `also`
    (the same starts: how many blocks a session needs, without measuring it twice)."""
    suite_path = work / f"suite-{seed}.toml"
    suite_path.write_text(SUITE.format(seed=seed))
    db = store.open_db(work / "ab.db")
    kept = Blocks()
    whole = ab.run_ab(baseline=f"sim:{work / 'a.toml'}", candidate=f"sim:{work / candidate}",
                      suite=config.load_suite(str(suite_path)), blocks=blocks, db=db, out=work / "runs",
                      reporter=kept)  # fmt: skip
    firsts = {n: ab.judge_blocks(kept.done[:n], session_id=whole.id, baseline=whole.baseline,
                                 candidate=whole.candidate, suite=whole.suite) for n in also if n < blocks}  # fmt: skip
    return {blocks: whole} | firsts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--blocks", type=int, default=ab.DEFAULT_BLOCKS)
    parser.add_argument("--first-seed", type=int, default=0, help="Seeds first-seed … first-seed + runs − 1.")
    parser.add_argument("--condition", choices=["both", "aa", "ab"], default="both",
                        help="Run one condition only (to spread the sessions over several processes).")  # fmt: skip
    parser.add_argument("--also", type=int, action="append", default=[], metavar="N",
                        help="Also judge each session's first N blocks as a session of N (repeatable).")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perfci-ab-power-") as tmp:
        work = Path(tmp)
        (work / "a.toml").write_text(MODEL.format(decode=DECODE_MS))
        (work / "a-copy.toml").write_text("# the same model\n" + MODEL.format(decode=DECODE_MS))
        (work / "b.toml").write_text(MODEL.format(decode=round(DECODE_MS * 1.05, 4)))
        rows = []
        conditions = {"aa": [("A/A", "a-copy.toml")], "ab": [("A/B (+5% decode)", "b.toml")]}
        chosen = conditions["aa"] + conditions["ab"] if args.condition == "both" else conditions[args.condition]
        for name, candidate in chosen:
            began = time.monotonic()
            verdicts: dict[int, Counter] = defaultdict(Counter)
            mdes: dict[int, list[float]] = defaultdict(list)
            for seed in range(args.first_seed, args.first_seed + args.runs):
                for n, s in session(work, candidate, seed, args.blocks, args.also).items():
                    verdicts[n][s.verdict] += 1
                    mdes[n] += [v.mde for v in s.judgement.series if v.metric == "tpot_ms_p50" and v.mde is not None]
                    unstable = sum(v.reason.startswith("machine unstable") for v in s.judgement.series)
                    print(f"{name} seed {seed}, {n} blocks: {s.verdict} ({s.judgement.reason}; A/A guard tripped on "
                          f"{unstable}; load average {os.getloadavg()[0]:.1f})", file=sys.stderr)  # fmt: skip
            wanted, target = TARGETS[name]
            for n in sorted(verdicts, reverse=True):
                v = verdicts[n]
                share = (v["FAIL"] if wanted == "FAIL" else args.runs - v["FAIL"]) / args.runs
                rows.append((name, n, v, wanted, share, target, statistics.median(mdes[n]) if mdes[n] else None,
                             time.monotonic() - began))  # fmt: skip
    print(f"| condition | blocks | sessions | FAIL | INCONCLUSIVE | PASS | IMPROVED | {'share':>8} | target | "
          "median MDE (tpot p50) | wall |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    for name, n, v, wanted, share, target, mde, wall in rows:
        ok &= share >= target or n != args.blocks
        print(f"| {name} | {n} | {args.runs} | {v['FAIL']} | {v['INCONCLUSIVE']} | {v['PASS']} | {v['IMPROVED']} | "
              f"{wanted} {share:.0%} | ≥ {target:.0%} | {'—' if mde is None else f'±{mde:.1%}'} | {wall:.0f} s |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
