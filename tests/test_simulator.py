"""The simulator as users meet it: a real subprocess on a free port, spoken to over real HTTP (aiohttp)."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from perfci.config import Sim
from perfci.errors import ConfigError
from perfci.measure.simulator import load_config, step_ms

REPO = Path(__file__).resolve().parents[1]
MODEL = "sim-model"
FAST = {"startup_s": 0, "first_token_ms": 1, "decode_ms_per_token": 1, "prefill_ms_per_token": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.proc.poll() is None, f"simulator exited {self.proc.returncode}:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {text!r} in the log:\n{self.log()}"
            time.sleep(0.01)

    def wait_healthy(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"simulator exited {self.proc.returncode}:\n{self.log()}"
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"simulator not healthy after {timeout} s:\n{self.log()}"
            time.sleep(0.02)


def launch(log_dir: Path, config: dict, *args: str) -> Server:
    port = free_port()
    log_path = log_dir / f"sim-{port}.log"
    argv = [sys.executable, "-m", "perfci.measure.simulator", "--port", str(port), "--model", MODEL,
            "--config", json.dumps(config), *args]
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    return Server(proc, port, log_path)


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.kill()
    server.proc.wait(timeout=10)


@pytest.fixture
def start_sim(tmp_path):
    """Start simulators (not waiting for health); each is killed by its PID afterwards."""
    servers: list[Server] = []

    def start(config: dict, *args: str) -> Server:
        servers.append(launch(tmp_path, config, *args))
        return servers[-1]

    yield start
    for server in servers:
        stop(server)


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    server = launch(tmp_path_factory.mktemp("sim"), FAST)
    try:
        server.wait_healthy()
        yield server
    finally:
        stop(server)


def ready(start_sim, config: dict) -> Server:
    server = start_sim(config)
    server.wait_healthy()
    return server


# --- client -----------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    sent: float
    lines: list[str] = field(default_factory=list)  # non-empty SSE lines, decoded
    times: list[float] = field(default_factory=list)  # arrival of each line (perf_counter)
    error: str = ""  # the stream broke

    @property
    def chunks(self) -> list[dict]:
        """Parsed JSON payloads of well-formed data lines, [DONE] excluded."""
        out = []
        for line in self.lines:
            try:
                out.append(json.loads(line.removeprefix("data: ")))
            except json.JSONDecodeError:
                continue
        return out

    @property
    def token_times(self) -> list[float]:
        return [t for t, line in zip(self.times, self.lines, strict=True) if '"choices":[{' in line]

    @property
    def ttft_ms(self) -> float:
        return (self.token_times[0] - self.sent) * 1000

    @property
    def itls_ms(self) -> list[float]:
        t = self.token_times
        return [(b - a) * 1000 for a, b in itertools.pairwise(t)]


async def post(session: aiohttp.ClientSession, url: str, body: dict | bytes) -> Reply:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = time.perf_counter()
    async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
        reply = Reply(resp.status, dict(resp.headers), sent)
        try:
            async for raw in resp.content:
                now = time.perf_counter()
                if line := raw.decode().strip():
                    reply.lines.append(line)
                    reply.times.append(now)
        except aiohttp.ClientError as e:
            reply.error = repr(e)
    return reply


def request(url: str, *bodies: dict | bytes) -> list[Reply]:
    """Send the bodies concurrently and read every reply to its end."""

    async def go() -> list[Reply]:
        async with aiohttp.ClientSession() as session:
            return await asyncio.gather(*(post(session, url, body) for body in bodies))

    return asyncio.run(go())


def completion(max_tokens: int, stream: bool = True, prompt: str = "one two three", **extra) -> dict:
    return {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "stream": stream,
            "stream_options": {"include_usage": True}, "ignore_eos": True, **extra}


def get(url: str) -> tuple[int, dict[str, str], dict]:
    async def go():
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return resp.status, dict(resp.headers), await resp.json()

    return asyncio.run(go())


# --- startup and process ------------------------------------------------------------------------------------

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} perfci-sim \(SIMULATOR\) "


def test_startup_phases_are_logged_and_the_port_stays_unbound_until_complete(start_sim):
    server = start_sim({"startup_s": 1.0})
    server.wait_for_log("starting")
    while "Application startup complete." not in server.log():
        assert not port_open(server.port), "port bound before startup completed"
        assert server.proc.poll() is None, server.log()
        time.sleep(0.02)
    assert port_open(server.port)

    lines = server.log().splitlines()
    assert all(re.match(STAMP, line) for line in lines), lines
    took = {m[1]: float(m[2]) for line in lines if (m := re.search(r"(\w+) took (\d+\.\d{3}) s$", line))}
    assert list(took) == ["load_weights", "compile", "warmup"]
    for phase, share in {"load_weights": 0.5, "compile": 0.35, "warmup": 0.15}.items():
        assert share <= took[phase] < share + 0.3, took
    assert lines[-1].endswith("perfci-sim (SIMULATOR) Application startup complete.")


def test_sigterm_during_startup_and_mid_stream_exits_cleanly(start_sim):
    booting = start_sim({"startup_s": 5})
    booting.wait_for_log("starting")
    booting.proc.send_signal(signal.SIGTERM)
    assert booting.proc.wait(timeout=2) == 0
    assert not port_open(booting.port)

    busy = ready(start_sim, {**FAST, "decode_ms_per_token": 5})

    async def stream_then_term() -> tuple[Reply, float]:
        async with aiohttp.ClientSession() as session:
            task = asyncio.create_task(post(session, f"{busy.url}/v1/completions", completion(2000)))
            await asyncio.sleep(0.3)
            signalled = time.monotonic()
            busy.proc.send_signal(signal.SIGTERM)
            return await task, signalled

    reply, signalled = asyncio.run(stream_then_term())
    assert busy.proc.wait(timeout=3) == 0
    assert time.monotonic() - signalled < 2  # exits within the grace period, not after the stream's 10 s
    assert 0 < len(reply.token_times) < 2000 and "data: [DONE]" not in reply.lines
    assert "shutdown complete" in busy.log()


@pytest.mark.parametrize("args, named", [
    (["--config", '{"decode_ms_per_token": -1}'], "decode_ms_per_token"),
    (["--config", '{"decode_ms": 1}'], "decode_ms: unknown key"),
    (["--config", "{not json"], "--config: not valid JSON"),
    (["--config-file", "/nonexistent/sim.toml"], "/nonexistent/sim.toml: cannot read"),
])
def test_bad_config_exits_2_naming_the_problem(args, named):
    argv = [sys.executable, "-m", "perfci.measure.simulator", "--port", "9", "--model", MODEL, *args]
    done = subprocess.run(argv, check=False, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr
    assert "SIMULATOR" in done.stderr


def test_latency_file_overrides_config(tmp_path):
    latency = tmp_path / "latency.toml"
    latency.write_text("decode_ms_per_token = 7.5\n")
    sim = load_config('{"decode_ms_per_token": 1, "max_batch": 3}', latency_file=latency)
    assert (sim.decode_ms_per_token, sim.max_batch) == (7.5, 3)

    as_json = tmp_path / "latency.json"
    as_json.write_text('{"max_batch": 0}')
    with pytest.raises(ConfigError, match=r"latency.json: invalid simulator config\n  max_batch"):
        load_config(None, latency_file=as_json)


def test_step_duration_model():
    sim = Sim(first_token_ms=2, prefill_ms_per_token=0.5, decode_ms_per_token=10, slowdown_per_request=0.1)
    assert step_ms(sim, 0, []) == 0
    assert step_ms(sim, 0, [100]) == 52
    assert step_ms(sim, 1, []) == 10
    assert step_ms(sim, 4, []) == pytest.approx(13)
    assert step_ms(sim, 2, [10, 20]) == pytest.approx(11 + 7 + 12)


# --- API --------------------------------------------------------------------------------------------------


def test_models_and_health_say_simulator(fast):
    status, headers, body = get(f"{fast.url}/v1/models")
    assert status == 200 and headers["x-perfci-simulator"] == "1"
    assert [(m["id"], m["owned_by"]) for m in body["data"]] == [(MODEL, "perfci-simulator")]


def test_streaming_completion_one_token_per_chunk_then_usage_and_done(fast):
    (reply,) = request(f"{fast.url}/v1/completions", completion(7, prompt="a b  c\nd"))
    assert reply.status == 200 and reply.headers["x-perfci-simulator"] == "1"
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    *tokens, usage = reply.chunks
    assert len(tokens) == 7
    assert all(re.fullmatch(r"w\d+ ", c["choices"][0]["text"]) for c in tokens)
    assert [c["choices"][0]["finish_reason"] for c in tokens] == [None] * 6 + ["length"]
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 4, "completion_tokens": 7, "total_tokens": 11}
    assert reply.lines[-1] == "data: [DONE]" and not reply.error


def test_streaming_chat_role_first_and_no_usage_unless_asked(fast):
    body = {"model": MODEL, "messages": [{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": "hello there you"}],
            "max_tokens": 5, "stream": True}
    (reply,) = request(f"{fast.url}/v1/chat/completions", body)
    chunks = reply.chunks
    assert len(chunks) == 5 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(re.fullmatch(r"w\d+ ", c["choices"][0]["delta"]["content"]) for c in chunks)
    assert "role" not in chunks[1]["choices"][0]["delta"]

    (with_usage,) = request(f"{fast.url}/v1/chat/completions",
                            {**body, "stream_options": {"include_usage": True}})
    assert with_usage.chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}


def test_non_streaming_completion_and_chat(fast):
    (completions,) = request(f"{fast.url}/v1/completions", completion(4, stream=False))
    body = json.loads(completions.lines[0])
    assert body["object"] == "text_completion" and len(body["choices"][0]["text"].split()) == 4
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}

    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 3}
    (reply,) = request(f"{fast.url}/v1/chat/completions", chat)
    body = json.loads(reply.lines[0])
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert len(body["choices"][0]["message"]["content"].split()) == 3
    assert body["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("path, body, status, param", [
    ("/v1/completions", b"{not json", 400, None),
    ("/v1/completions", {"model": MODEL}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": ["a", "b"]}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": "a", "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {"model": "gpt-9", "prompt": "a"}, 404, "model"),
    ("/v1/chat/completions", {"model": MODEL, "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user"}]}, 400, "messages"),
])
def test_bad_requests_get_openai_error_objects(fast, path, body, status, param):
    (reply,) = request(fast.url + path, body)
    assert reply.status == status
    error = json.loads(reply.lines[0])["error"]
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"


# --- latency model ----------------------------------------------------------------------------------------

LATENCY = {"startup_s": 0, "first_token_ms": 40, "prefill_ms_per_token": 0.2, "decode_ms_per_token": 20,
           "slowdown_per_request": 0.25}


def test_latency_model_is_honoured(start_sim):
    server = ready(start_sim, LATENCY)
    url = f"{server.url}/v1/completions"
    prompt = " ".join(["w"] * 100)  # prefill: 40 + 0.2 × 100 = 60 ms

    alone = [request(url, completion(10, prompt=prompt))[0] for _ in range(3)]
    # A busy machine only ever adds delay: the quickest of three shows the model's own time.
    assert min(r.ttft_ms for r in alone) == pytest.approx(60, rel=0.2)
    assert statistics.median(i for r in alone for i in r.itls_ms) == pytest.approx(20, rel=0.2)

    # Four at once: decode steps take 20 × (1 + 0.25 × 3) = 35 ms, and the four streams overlap.
    together = request(url, *[completion(12, prompt=prompt) for _ in range(4)])
    assert statistics.median(i for r in together for i in r.itls_ms) == pytest.approx(35, rel=0.2)
    assert max(r.token_times[0] for r in together) < min(r.token_times[-1] for r in together)


def test_max_batch_queues_requests(start_sim):
    server = ready(start_sim, {**FAST, "max_batch": 1, "decode_ms_per_token": 5})
    first, second = sorted(request(f"{server.url}/v1/completions", completion(6), completion(6)),
                           key=lambda r: r.token_times[0])
    assert len(first.token_times) == len(second.token_times) == 6
    assert second.token_times[0] > first.token_times[-1]  # admitted only after the first one finished


# --- faults -----------------------------------------------------------------------------------------------


def test_error_rate_answers_500_before_streaming(start_sim):
    server = ready(start_sim, {**FAST, "error_rate": 1.0})
    (reply,) = request(f"{server.url}/v1/completions", completion(4))
    assert reply.status == 500 and reply.headers["x-perfci-simulator"] == "1"
    assert json.loads(reply.lines[0])["error"]["type"] == "server_error"


def test_drop_rate_cuts_the_stream_midway(start_sim):
    server = ready(start_sim, {**FAST, "drop_rate": 1.0})
    (reply,) = request(f"{server.url}/v1/completions", completion(8))
    assert reply.status == 200 and reply.error
    assert len(reply.token_times) == 4 and "data: [DONE]" not in reply.lines
    (again,) = request(f"{server.url}/v1/completions", completion(8))  # the server lives on
    assert again.status == 200 and len(again.token_times) == 4


def test_malformed_rate_garbles_one_line_then_continues(start_sim):
    server = ready(start_sim, {**FAST, "malformed_rate": 1.0})
    (reply,) = request(f"{server.url}/v1/completions", completion(6))
    assert reply.lines.count("data: {not json") == 1
    assert reply.lines.index("data: {not json") == 3  # after half of the tokens
    assert len(reply.token_times) == 6 and reply.lines[-1] == "data: [DONE]" and not reply.error


def test_start_noise_gives_each_start_its_own_speed_unless_seeded():
    from perfci.config import Sim
    from perfci.measure.simulator import start_factor

    assert start_factor(Sim()) == 1.0
    fresh = [start_factor(Sim(start_noise=0.05)) for _ in range(200)]
    assert len(set(fresh)) == 200
    spread = statistics.stdev(math.log(f) for f in fresh)
    assert 0.035 < spread < 0.065  # log-normal with a 5 % relative spread
    assert len({start_factor(Sim(start_noise=0.05, start_seed=3)) for _ in range(5)}) == 1
