"""Streaming client for OpenAI-compatible servers: one point of load, one sample per request.

Timing: `sent_ns` is stamped right before the request is written to its socket; every read is stamped in
the connection's `data_received` before anything looks at it (perfci.measure.loadgen.connection), and parsing runs
after all reads that arrived together have been stamped. A chunk's receipt time is the stamp of the read
that completed its `data:` line; chunks that arrive in one read share it. JSON decoding happens chunk by
chunk, after the stamps, so its cost is spread evenly over the stream.

A request succeeds only if it finished (docs/metrics.md, "When a request counts"): a 2xx response whose
stream ended (`data: [DONE]`, or a body that ended cleanly by its HTTP framing), that carried text and a
`finish_reason` (before `[DONE]` when there is one), no malformed or error event, and, when the server was
asked to `ignore_eos`, exactly `max_tokens` output tokens. Anything else is a sample with `error` and an
`error_kind` (ERROR_KINDS). Faults never raise. A malformed chunk marks the request failed, but reading goes
on to the end of the stream so the chunk times stay complete and the connection can be reused.

Bounded waits: each request has a total timeout, and an idle timeout (no byte from the server for that
long, from the send or the last read) cuts a silent stream early. A point stops sending once `stall_after`
requests in a row (warmups included) timed out or could not connect, or at `stop_at_ns` (a run deadline);
what it did not send is counted in `PointResult.unsent` and the reason is `PointResult.stopped`.
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
from perfci.measure.loadgen.connection import (
    ConnectionClosed,
    ConnectionPool,
    Exchange,
    ProtocolError,
)
from perfci.measure.loadgen.sse import SSEParser

Api = Literal["completions", "chat"]
_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}
_DONE = b"[DONE]"

# Why a request failed, one word each (stored per request as `error_kind`, counted per point).
ERROR_KINDS = (
    "connection",  # no connection, or it closed before any response
    "timeout",  # the request (or warmup) timeout, or the idle timeout: nothing arrived for too long
    "bad_http",  # bytes that are not an HTTP/1.x response
    "http_4xx",  # a non-2xx status, by class (http_3xx, http_5xx, ...)
    "http_5xx",
    "stream_cut",  # the connection broke mid-body, before `data: [DONE]`
    "bad_sse",  # a `data:` line that is not a JSON object
    "stream_error",  # an `{"error": ...}` event in the stream
    "no_finish",  # the stream ended without a finish_reason (or [DONE] came before it)
    "no_output",  # a finished stream that carried no text
    "short_output",  # with ignore_eos: fewer output tokens than max_tokens
    "long_output",  # with ignore_eos: more output tokens than max_tokens
)
STALL_KINDS = frozenset({"timeout", "connection"})  # a run of these stops a point (the engine is not answering)


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
    error_kind: str | None = None  # one of ERROR_KINDS; None on success

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class PointResult:
    samples: list[RequestSample]  # measured requests only (warmup excluded), in send order
    started_ns: int  # first measured send
    ended_ns: int  # last measured request finished
    stopped: str | None = None  # why the point stopped before its end (stalled engine, run deadline)
    unsent: int = 0  # planned measured requests not sent because it stopped
    stalled: bool = False  # it stopped because the server did not answer (STALL_KINDS in a row)


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
    idle_timeout_s: float | None = None,
    warmup_timeout_s: float | None = None,
    stall_after: int | None = None,
    stop_at_ns: int | None = None,
    extra_body: Mapping[str, Any] | None = None,
    on_sample: Callable[[RequestSample], None] | None = None,
) -> PointResult:
    """Run one point against `base_url` (the server root, e.g. http://127.0.0.1:8000).

    Warmup requests go first, one at a time, unmeasured. Then, with `arrivals` (seconds from the start, one
    per spec) request i is sent at arrivals[i] (open loop) with `concurrency` as an optional cap on requests
    in flight; without, `concurrency` workers each send back-to-back through `specs` (closed loop). No new
    request is sent after `duration_s`; requests in flight finish, bounded by `request_timeout_s` and by
    `idle_timeout_s` (no byte from the server for that long). Warmups are bounded by `warmup_timeout_s` too.
    Once `stall_after` requests in a row (warmups included) time out or fail to connect, or at `stop_at_ns`
    (a `perf_counter_ns` deadline), no further request is sent and the result says why (`stopped`).
    With `ignore_eos` in `extra_body`, a request succeeds only with exactly `max_tokens` output tokens.
    `on_sample` sees each measured sample as it completes (progress bars), after its stamps are taken.
    """
    _check(api, specs, concurrency, arrivals, duration_s, request_timeout_s)
    for name, value in (("idle_timeout_s", idle_timeout_s), ("warmup_timeout_s", warmup_timeout_s)):
        if value is not None and value <= 0:
            raise ConfigError(f"run_point: {name} must be > 0, got {value}")
    host, port, prefix = _server(base_url)
    path = prefix + _PATHS[api]
    extra = dict(extra_body or {})
    exact = extra.get("ignore_eos") is True  # the server was asked for exactly max_tokens
    idle_s = min(idle_timeout_s or request_timeout_s, request_timeout_s)
    warm_s = min(warmup_timeout_s or request_timeout_s, request_timeout_s)
    gate = _Gate(stall_after, stop_at_ns)
    # One connection per request in flight, opened on demand and kept alive: as many as `concurrency`.
    pool = ConnectionPool(host, port)
    try:

        async def send(spec: RequestSpec, scheduled_ns: int | None, measured: bool = True) -> RequestSample:
            body = json.dumps(_body(api, model, spec, extra)).encode()
            timeout_s = request_timeout_s if measured else warm_s
            sample = await _request(pool, path, body, api, spec, scheduled_ns, timeout_s, idle_s, exact)
            gate.saw(sample)
            if measured and on_sample is not None:
                on_sample(sample)
            return sample

        for spec in warmup:
            if gate.closed():
                break
            await send(spec, None, measured=False)
        start_ns = time.perf_counter_ns()
        stop_ns = None if duration_s is None else start_ns + round(duration_s * 1e9)
        if gate.closed():
            samples = []
        elif arrivals is None:
            assert concurrency is not None  # _check
            samples = await _closed_loop(send, specs, concurrency, stop_ns, gate)
        else:
            samples = await _open_loop(send, specs, arrivals, concurrency, start_ns, stop_ns, gate)
    finally:
        pool.close()
    unsent = len(specs) - len(samples) if gate.why else 0
    if not samples:
        return PointResult(samples=[], started_ns=start_ns, ended_ns=start_ns, stopped=gate.why, unsent=unsent,
                           stalled=gate.stalled)  # fmt: skip
    return PointResult(samples=samples, started_ns=min(s.sent_ns for s in samples),
                       ended_ns=max(s.end_ns for s in samples), stopped=gate.why, unsent=unsent,
                       stalled=gate.stalled)  # fmt: skip


class _Gate:
    """Whether a point may send another request: not after `stall_after` stalls in a row (timeouts or
    failed connections, in completion order), nor past the `stop_at_ns` deadline. `why` says which closed it."""

    __slots__ = ("_stall_after", "_stalls", "_stop_at_ns", "stalled", "why")

    def __init__(self, stall_after: int | None, stop_at_ns: int | None):
        self._stall_after = stall_after or None
        self._stop_at_ns = stop_at_ns
        self._stalls = 0
        self.stalled = False
        self.why: str | None = None

    def saw(self, sample: RequestSample) -> None:
        self._stalls = self._stalls + 1 if sample.error_kind in STALL_KINDS else 0
        if self.why is None and self._stall_after is not None and self._stalls >= self._stall_after:
            self.stalled = True
            self.why = (f"engine stalled: {self._stalls} requests in a row timed out or could not connect "
                        f"(last: {sample.error})")  # fmt: skip

    def closed(self, at_ns: int | None = None) -> bool:
        if self.why is None and self._stop_at_ns is not None:
            if (at_ns if at_ns is not None else time.perf_counter_ns()) >= self._stop_at_ns:
                self.why = "run deadline reached"
        return self.why is not None


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


async def _closed_loop(send: Send, specs: Sequence[RequestSpec], workers: int, stop_ns: int | None,
                       gate: _Gate) -> list[RequestSample]:  # fmt: skip
    results: list[RequestSample | None] = [None] * len(specs)
    queue = iter(enumerate(specs))  # shared: workers take specs in order, so send order is spec order

    async def worker() -> None:
        for i, spec in queue:
            if (stop_ns is not None and time.perf_counter_ns() >= stop_ns) or gate.closed():
                return
            results[i] = await send(spec, None)

    await asyncio.gather(*(worker() for _ in range(min(workers, len(specs)))))
    return [s for s in results if s is not None]


async def _open_loop(send: Send, specs: Sequence[RequestSpec], arrivals: Sequence[float], cap: int | None,
                     start_ns: int, stop_ns: int | None, gate: _Gate) -> list[RequestSample]:  # fmt: skip
    slots = asyncio.Semaphore(cap) if cap else None

    async def capped(spec: RequestSpec, scheduled_ns: int) -> RequestSample | None:
        assert slots is not None
        async with slots:  # FIFO: requests held back by the cap keep their order
            if (stop_ns is not None and time.perf_counter_ns() >= stop_ns) or gate.closed():
                return None
            return await send(spec, scheduled_ns)

    tasks: list[asyncio.Task[RequestSample | None]] = []
    for spec, offset in zip(specs, arrivals, strict=True):
        scheduled_ns = start_ns + round(offset * 1e9)
        if (stop_ns is not None and scheduled_ns >= stop_ns) or gate.closed(scheduled_ns):
            break
        delay_s = (scheduled_ns - time.perf_counter_ns()) / 1e9
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        if gate.closed():
            break
        tasks.append(asyncio.create_task(capped(spec, scheduled_ns) if slots else send(spec, scheduled_ns)))
    return [s for s in await asyncio.gather(*tasks) if s is not None]


async def _request(pool: ConnectionPool, path: str, body: bytes, api: str, spec: RequestSpec, scheduled_ns: int | None,
                   timeout_s: float, idle_s: float, exact: bool) -> RequestSample:  # fmt: skip
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
    failure: tuple[str, str] | None = None  # (kind, error)
    idle = _IdleWatch(exchange, idle_s)
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            idle.start(deadline)
            try:
                await pool.send(exchange, path, _HEADERS, body)
            finally:
                idle.stop()
    except TimeoutError:
        why = f"no data for {idle_s:g}s (idle timeout)" if idle.fired else f"timeout after {timeout_s:g}s"
        failure = ("timeout", why)
    except ConnectionClosed as e:
        cut = exchange.status > 0
        failure = ("stream_cut", f"stream ended before [DONE]: {e}") if cut else ("connection", f"no response: {e}")
    except ProtocolError as e:
        failure = ("bad_http", f"bad HTTP response: {e}")
    except OSError as e:  # from connecting
        failure = ("connection", f"connection failed: {e.strerror or e}")
    end_ns = time.perf_counter_ns()
    status = exchange.status
    if chunks.done_ns is not None:
        # Everything arrived; a fault after [DONE] (a server that never ends the body) does not undo that.
        failure, end_ns = None, chunks.done_ns
    usage = chunks.usage
    prompt_tokens, output_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    output_tokens = output_tokens if isinstance(output_tokens, int) else len(chunks.ns)
    if failure is None and status:
        failure = _judge(status, error_body, chunks, parser.foreign, output_tokens,
                         spec.output_tokens if exact else None)  # fmt: skip
    kind, error = failure or (None, None)
    return RequestSample(
        scheduled_ns=exchange.sent_ns if scheduled_ns is None else scheduled_ns,
        sent_ns=exchange.sent_ns,
        first_token_ns=chunks.ns[0] if chunks.ns else None,
        chunk_ns=chunks.ns,
        end_ns=end_ns,
        prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else spec.prompt_tokens,
        output_tokens=output_tokens,
        status=status,
        error=error,
        error_kind=kind,
    )


def _judge(status: int, error_body: bytes, chunks: _Chunks, foreign: bytes | None, output_tokens: int,
           exact: int | None) -> tuple[str, str] | None:  # fmt: skip
    """Of a response that ended (by [DONE] or its HTTP framing): None if it finished, else (kind, error).

    A body that ended cleanly without `data: [DONE]` is complete: transformers serve never sends [DONE], and
    `vllm bench serve` and the OpenAI SDK accept such streams too. It must still carry a finish_reason.
    """
    if not 200 <= status < 300:
        return f"http_{status // 100}xx", f"HTTP {status}: {error_body[:200].decode(errors='replace')}"
    if chunks.problem is not None:
        return chunks.problem
    if chunks.finish is None and foreign is not None:
        return "bad_sse", f"not an event stream: {foreign!r}"
    if chunks.finish is None:
        late = " ([DONE] came first)" if chunks.finish_late else ""
        return "no_finish", f"the stream ended without a finish_reason{late} after {output_tokens} tokens"
    if not chunks.ns:
        return "no_output", f"the response carried no generated text (finish_reason {chunks.finish!r})"
    if exact is not None and output_tokens != exact:
        kind = "short_output" if output_tokens < exact else "long_output"
        return kind, (f"{output_tokens} output tokens for max_tokens={exact} with ignore_eos "
                      f"(finish_reason {chunks.finish!r})")  # fmt: skip
    return None


class _IdleWatch:
    """Cuts a request that hears nothing for `idle_s`: one timer per request, re-armed only when it fires
    (at the last read + idle_s), so streaming chunks cost no timer work. Firing moves the request's own
    timeout to now, so it ends as a TimeoutError like any other timeout."""

    __slots__ = ("_exchange", "_handle", "_idle_ns", "_loop", "_timeout", "fired")

    def __init__(self, exchange: Exchange, idle_s: float):
        self._exchange = exchange
        self._idle_ns = round(idle_s * 1e9)
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._timeout: asyncio.Timeout | None = None
        self.fired = False

    def start(self, timeout: asyncio.Timeout) -> None:
        when = timeout.when()
        if when is not None and self._loop.time() + self._idle_ns / 1e9 >= when:
            return  # the request's own timeout comes first
        self._timeout = timeout
        self._handle = self._loop.call_later(self._idle_ns / 1e9, self._check)

    def _check(self) -> None:
        assert self._timeout is not None
        if self._timeout.expired():
            return
        quiet_ns = time.perf_counter_ns() - self._exchange.last_ns
        if quiet_ns >= self._idle_ns:
            self.fired = True
            self._timeout.reschedule(self._loop.time())
        else:
            self._handle = self._loop.call_later((self._idle_ns - quiet_ns) / 1e9, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


class _Chunks:
    """What a stream has delivered: receipt stamps of the chunks carrying text, the last usage seen, the
    finish_reason, the first problem (kind, error). Each payload is decoded when it arrives, after its stamp:
    a few microseconds each, spread evenly. Decoding a whole stream at its end instead stalls the event loop
    for every other stream when many end together (see docs/benchmarks.md)."""

    __slots__ = ("chat", "done_ns", "finish", "finish_late", "ns", "problem", "usage")

    def __init__(self, api: str):
        self.chat = api == "chat"
        self.ns: list[int] = []
        self.usage: Mapping[str, Any] = {}
        self.problem: tuple[str, str] | None = None
        self.finish: str | None = None  # the first finish_reason received before [DONE]
        self.finish_late = False  # one came after [DONE]: the stream's order is broken
        self.done_ns: int | None = None

    def add(self, stamp: int, payload: bytes) -> None:
        if payload == _DONE:
            self.done_ns = self.done_ns or stamp
            return
        try:
            chunk = json.loads(payload.decode())
        except ValueError:  # UnicodeDecodeError too
            chunk = None
        if not isinstance(chunk, dict):
            self.problem = self.problem or ("bad_sse", f"malformed SSE data: {payload[:80]!r}")
        elif chunk.get("error"):
            self.problem = self.problem or ("stream_error", f"server error in stream: {str(chunk['error'])[:200]}")
        else:
            if isinstance(chunk.get("usage"), dict):
                self.usage = chunk["usage"]
            choices = chunk.get("choices")
            if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
                return
            choice = choices[0]
            if self._carries_text(choice):
                self.ns.append(stamp)
            reason = choice.get("finish_reason")
            if reason is not None and self.finish is None:
                if self.done_ns is None:
                    self.finish = str(reason)
                else:
                    self.finish_late = True

    def _carries_text(self, choice: Mapping[str, Any]) -> bool:
        if self.chat:
            delta = choice.get("delta")
            return isinstance(delta, dict) and bool(delta.get("content"))
        return bool(choice.get("text"))
