"""Streaming client for OpenAI-compatible servers: one point of load, one sample per request.

Timing: `sent_ns` is stamped right before the request is written to its socket; every read is stamped in
the connection's `data_received` before anything looks at it (perfci.loadgen.connection), and parsing runs
after all reads that arrived together have been stamped. A chunk's receipt time is the stamp of the read
that completed its `data:` line; chunks that arrive in one read share it. JSON decoding happens chunk by
chunk, after the stamps, so its cost is spread evenly over the stream.

Faults never raise: a refused connection, an HTTP error, a cut stream, a malformed chunk or a timeout each
become a sample with `status` and `error`. A `data:` line that is not JSON (or a mid-stream `{"error": ...}`)
marks the request failed, but reading goes on to the end of the stream so the chunk times stay complete and
the connection can be reused.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from perfci.errors import ConfigError
from perfci.loadgen.connection import (
    ConnectionClosed,
    ConnectionPool,
    Exchange,
    ProtocolError,
)
from perfci.loadgen.sse import SSEParser

Api = Literal["completions", "chat"]
_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}
_DONE = b"[DONE]"


@dataclass(slots=True, frozen=True)
class RequestSpec:
    prompt: str  # text whose length in tokens is exactly prompt_tokens for the served tokenizer
    prompt_tokens: int
    output_tokens: int  # asked for via max_tokens (+ the engine's extras such as ignore_eos/min_tokens)


@dataclass(slots=True)
class RequestSample:
    """One request. Times are `time.perf_counter_ns()` stamps."""

    scheduled_ns: int  # planned send time; == sent_ns for closed-loop levels
    sent_ns: int  # stamped just before the request is handed to the connection
    first_token_ns: int | None  # receipt of the first chunk carrying generated text
    chunk_ns: list[int]  # receipt of every chunk carrying text (the first one included)
    end_ns: int  # receipt of `data: [DONE]`, or of the failure
    prompt_tokens: int  # usage.prompt_tokens when the server sends usage, else the spec's
    output_tokens: int  # usage.completion_tokens when sent, else the number of text chunks
    status: int  # HTTP status; 0 when no response at all
    error: str | None  # None on success

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class PointResult:
    samples: list[RequestSample]  # measured requests only (warmup excluded), in send order
    started_ns: int  # first measured send
    ended_ns: int  # last measured request finished


async def run_point(
    *,
    base_url: str,
    model: str,
    api: Api,
    specs: Sequence[RequestSpec],
    concurrency: int | None = None,
    arrivals: Sequence[float] | None = None,
    duration_s: float | None = None,
    warmup: Sequence[RequestSpec] = (),
    request_timeout_s: float = 120.0,
    extra_body: Mapping[str, Any] | None = None,
    on_sample: Callable[[RequestSample], None] | None = None,
) -> PointResult:
    """Run one point against `base_url` (the server root, e.g. http://127.0.0.1:8000).

    Warmup requests go first, one at a time, unmeasured. Then, with `arrivals` (seconds from the start, one
    per spec) request i is sent at arrivals[i] (open loop) with `concurrency` as an optional cap on requests
    in flight; without, `concurrency` workers each send back-to-back through `specs` (closed loop). No new
    request is sent after `duration_s`; requests in flight finish, bounded by `request_timeout_s`.
    `on_sample` sees each measured sample as it completes (progress bars), after its stamps are taken.
    """
    _check(api, specs, concurrency, arrivals, duration_s, request_timeout_s)
    host, port, prefix = _server(base_url)
    path = prefix + _PATHS[api]
    extra = dict(extra_body or {})
    # One connection per request in flight, opened on demand and kept alive: as many as `concurrency`.
    pool = ConnectionPool(host, port)
    try:

        async def send(spec: RequestSpec, scheduled_ns: int | None, measured: bool = True) -> RequestSample:
            body = json.dumps(_body(api, model, spec, extra)).encode()
            sample = await _request(pool, path, body, api, spec, scheduled_ns, request_timeout_s)
            if measured and on_sample is not None:
                on_sample(sample)
            return sample

        for spec in warmup:
            await send(spec, None, measured=False)
        start_ns = time.perf_counter_ns()
        stop_ns = None if duration_s is None else start_ns + round(duration_s * 1e9)
        if arrivals is None:
            assert concurrency is not None  # _check
            samples = await _closed_loop(send, specs, concurrency, stop_ns)
        else:
            samples = await _open_loop(send, specs, arrivals, concurrency, start_ns, stop_ns)
    finally:
        pool.close()
    if not samples:
        return PointResult(samples=[], started_ns=start_ns, ended_ns=start_ns)
    return PointResult(samples=samples, started_ns=min(s.sent_ns for s in samples),
                       ended_ns=max(s.end_ns for s in samples))  # fmt: skip


def _server(base_url: str) -> tuple[str, int, str]:
    """http://host[:port][/prefix] -> (host, port, prefix)."""
    url = urlsplit(base_url)
    if url.scheme != "http" or not url.hostname:
        raise ConfigError(f"run_point: base_url must be http://host[:port][/path], got {base_url!r}")
    try:
        port = url.port or 80
    except ValueError:
        raise ConfigError(f"run_point: bad port in base_url {base_url!r}") from None
    return url.hostname, port, url.path.rstrip("/")


def _check(api: str, specs: Sequence[RequestSpec], concurrency: int | None, arrivals: Sequence[float] | None,
           duration_s: float | None, request_timeout_s: float) -> None:  # fmt: skip
    if api not in _PATHS:
        raise ConfigError(f"run_point: api must be one of {sorted(_PATHS)}, got {api!r}")
    if concurrency is not None and concurrency < 1:
        raise ConfigError(f"run_point: concurrency must be >= 1, got {concurrency}")
    if arrivals is None and concurrency is None:
        raise ConfigError("run_point: give arrivals (open loop) or concurrency (closed loop)")
    if arrivals is not None and len(arrivals) != len(specs):
        raise ConfigError(f"run_point: {len(arrivals)} arrival offsets for {len(specs)} requests")
    if duration_s is not None and duration_s <= 0:
        raise ConfigError(f"run_point: duration_s must be > 0, got {duration_s}")
    if request_timeout_s <= 0:
        raise ConfigError(f"run_point: request_timeout_s must be > 0, got {request_timeout_s}")


def _body(api: str, model: str, spec: RequestSpec, extra: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": spec.prompt}]
    else:
        body["prompt"] = spec.prompt
    body.update(max_tokens=spec.output_tokens, stream=True, stream_options={"include_usage": True})
    body.update(extra)
    return body


Send = Callable[[RequestSpec, int | None], Awaitable[RequestSample]]


async def _closed_loop(send: Send, specs: Sequence[RequestSpec], workers: int, stop_ns: int | None
                       ) -> list[RequestSample]:  # fmt: skip
    results: list[RequestSample | None] = [None] * len(specs)
    queue = iter(enumerate(specs))  # shared: workers take specs in order, so send order is spec order

    async def worker() -> None:
        for i, spec in queue:
            if stop_ns is not None and time.perf_counter_ns() >= stop_ns:
                return
            results[i] = await send(spec, None)

    await asyncio.gather(*(worker() for _ in range(min(workers, len(specs)))))
    return [s for s in results if s is not None]


async def _open_loop(send: Send, specs: Sequence[RequestSpec], arrivals: Sequence[float], cap: int | None,
                     start_ns: int, stop_ns: int | None) -> list[RequestSample]:  # fmt: skip
    slots = asyncio.Semaphore(cap) if cap else None

    async def capped(spec: RequestSpec, scheduled_ns: int) -> RequestSample | None:
        assert slots is not None
        async with slots:  # FIFO: requests held back by the cap keep their order
            if stop_ns is not None and time.perf_counter_ns() >= stop_ns:
                return None
            return await send(spec, scheduled_ns)

    tasks: list[asyncio.Task[RequestSample | None]] = []
    for spec, offset in zip(specs, arrivals, strict=True):
        scheduled_ns = start_ns + round(offset * 1e9)
        if stop_ns is not None and scheduled_ns >= stop_ns:
            break
        delay_s = (scheduled_ns - time.perf_counter_ns()) / 1e9
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        tasks.append(asyncio.create_task(capped(spec, scheduled_ns) if slots else send(spec, scheduled_ns)))
    return [s for s in await asyncio.gather(*tasks) if s is not None]


async def _request(pool: ConnectionPool, path: str, body: bytes, api: str, spec: RequestSpec,
                   scheduled_ns: int | None, timeout_s: float) -> RequestSample:  # fmt: skip
    """Send one streaming request; every read is stamped before anything looks at it."""
    parser = SSEParser()
    chunks = _Chunks(api)
    error_body = bytearray()

    def sink(now: int, data: bytes) -> None:
        if 200 <= exchange.status < 300:
            for payload in parser.feed(data):
                chunks.add(now, payload)
        elif len(error_body) < 200:
            error_body.extend(data)

    exchange = Exchange(sink)
    failure: str | None = None
    try:
        async with asyncio.timeout(timeout_s):
            await pool.send(exchange, path, _HEADERS, body)
    except TimeoutError:
        failure = f"timeout after {timeout_s:g}s"
    except ConnectionClosed as e:
        failure = f"stream ended before [DONE]: {e}" if exchange.status else f"no response: {e}"
    except ProtocolError as e:
        failure = f"bad HTTP response: {e}"
    except OSError as e:  # from connecting
        failure = f"connection failed: {e.strerror or e}"
    end_ns = time.perf_counter_ns()
    status = exchange.status
    if failure is None:
        if not 200 <= status < 300:
            failure = f"HTTP {status}: {error_body[:200].decode(errors='replace')}"
        elif not chunks.ns:
            failure = "the response carried no generated text"
        # A body that ended cleanly (chunked terminator or full Content-Length) without `data: [DONE]` is
        # complete: transformers serve never sends [DONE], and `vllm bench serve` and the OpenAI SDK accept
        # such streams too. A connection cut mid-body raised ConnectionClosed above.
    if chunks.done_ns is not None:
        # Everything arrived; a fault after [DONE] (a server that never ends the body) does not undo that.
        failure, end_ns = None, chunks.done_ns
    usage = chunks.usage
    prompt_tokens, output_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return RequestSample(
        scheduled_ns=exchange.sent_ns if scheduled_ns is None else scheduled_ns,
        sent_ns=exchange.sent_ns,
        first_token_ns=chunks.ns[0] if chunks.ns else None,
        chunk_ns=chunks.ns,
        end_ns=end_ns,
        prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else spec.prompt_tokens,
        output_tokens=output_tokens if isinstance(output_tokens, int) else len(chunks.ns),
        status=status,
        error=failure or chunks.problem,
    )


class _Chunks:
    """What a stream has delivered: receipt stamps of the chunks carrying text, the last usage seen, the
    first problem. Each payload is decoded when it arrives, after its stamp: a few microseconds each, spread
    evenly. Decoding a whole stream at its end instead stalls the event loop for every other stream when
    many end together (see docs/benchmarks.md)."""

    __slots__ = ("chat", "done_ns", "ns", "problem", "usage")

    def __init__(self, api: str):
        self.chat = api == "chat"
        self.ns: list[int] = []
        self.usage: Mapping[str, Any] = {}
        self.problem: str | None = None
        self.done_ns: int | None = None

    def add(self, stamp: int, payload: bytes) -> None:
        if payload == _DONE:
            self.done_ns = stamp
            return
        try:
            chunk = json.loads(payload.decode())
        except ValueError:  # UnicodeDecodeError too
            chunk = None
        if not isinstance(chunk, dict):
            self.problem = self.problem or f"malformed SSE data: {payload[:80]!r}"
        elif chunk.get("error"):
            self.problem = self.problem or f"server error in stream: {str(chunk['error'])[:200]}"
        else:
            if isinstance(chunk.get("usage"), dict):
                self.usage = chunk["usage"]
            if self._carries_text(chunk):
                self.ns.append(stamp)

    def _carries_text(self, chunk: Mapping[str, Any]) -> bool:
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            return False
        if self.chat:
            delta = choices[0].get("delta")
            return isinstance(delta, dict) and bool(delta.get("content"))
        return bool(choices[0].get("text"))
