"""run_point against a real streaming HTTP server on 127.0.0.1 that misbehaves on demand."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time

import pytest
from aiohttp import web

from perfci.errors import ConfigError
from perfci.loadgen.client import RequestSpec, run_point

TEMPLATE_TOKENS = 5  # what the fake adds to a chat prompt's token count, as a chat template would


class FakeServer:
    """An OpenAI-compatible streaming server in its own thread and event loop.

    `mode` picks the behaviour of every request: ok, no_usage, noisy (blank lines, comments, other fields,
    CRLF), malformed (a non-JSON data line mid-stream), error_chunk (an error object mid-stream), http_500,
    http_404, cut (connection aborted after
    `cut_after` chunks), cut_clean (response ends without [DONE]), hang (headers, then nothing).
    `die_after` = n closes the listener and aborts every connection when request n arrives.
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.first_token_s = 0.0
        self.token_gap_s = 0.001
        self.cut_after = 3
        self.die_after: int | None = None
        self.bodies: list[dict] = []
        self.received_ns: list[int] = []
        self.peers: set[tuple] = set()  # client (host, port) pairs: one per connection
        self.in_flight = 0
        self.max_in_flight = 0
        self._transports: set[asyncio.Transport] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> FakeServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", self._handle)
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, keepalive_timeout=0.1)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _die(self) -> None:
        await self._site.stop()
        for transport in list(self._transports):
            transport.abort()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.received_ns.append(time.perf_counter_ns())
        body = await request.json()
        self.bodies.append(body)
        self.peers.add(request.transport.get_extra_info("peername"))
        self._transports.add(request.transport)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.die_after is not None and len(self.bodies) >= self.die_after:
                await self._die()
            return await self._respond(request, body)
        finally:
            self.in_flight -= 1
            self._transports.discard(request.transport)

    async def _respond(self, request: web.Request, body: dict) -> web.StreamResponse:
        if self.mode.startswith("http_"):
            status = int(self.mode[5:])
            return web.Response(status=status, text=json.dumps({"error": "x" * 1000}), content_type="application/json")
        chat = "messages" in body
        prompt = body["messages"][0]["content"] if chat else body["prompt"]
        n = body["max_tokens"]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if self.mode == "hang":
            await asyncio.sleep(3600)
        eol = b"\r\n" if self.mode == "noisy" else b"\n"

        async def event(obj: dict | bytes) -> None:
            data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
            if self.mode == "noisy":
                await resp.write(b": keep-alive comment" + eol + b"event: completion" + eol + eol)
            await resp.write(b"data: " + data + eol + eol)

        if chat:  # as real servers do: a first chunk with the role and no text
            await event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        await asyncio.sleep(self.first_token_s)
        for i in range(n):
            if i:
                await asyncio.sleep(self.token_gap_s)
            if self.mode == "cut" and i == self.cut_after:
                request.transport.abort()
                return resp
            if self.mode == "malformed" and i == 1:
                await resp.write(b"data: {not json" + eol + eol)
            if self.mode == "error_chunk" and i == 2:  # as vLLM reports a failure after streaming began
                await event({"error": {"object": "error", "message": "engine died", "code": 500}})
                break
            choice = {"index": 0, "delta": {"content": f" t{i}"}} if chat else {"index": 0, "text": f" t{i}"}
            await event({"choices": [choice]})
        if self.mode == "cut_clean":
            await resp.write_eof()
            return resp
        if self.mode != "no_usage":
            words = len(prompt.split()) + (TEMPLATE_TOKENS if chat else 0)
            await event({"choices": [], "usage": {"prompt_tokens": words, "completion_tokens": n}})
        await event(b"[DONE]")
        await resp.write_eof()
        return resp


@pytest.fixture
def server():
    s = FakeServer().start()
    yield s
    s.stop()


def specs(n: int, prompt_tokens: int = 4, output_tokens: int = 6) -> list[RequestSpec]:
    return [RequestSpec(" ".join(f"w{i + 3}" for i in range(prompt_tokens)), prompt_tokens, output_tokens)] * n


def run(**kwargs):
    kwargs.setdefault("model", "m")
    kwargs.setdefault("api", "completions")
    return asyncio.run(run_point(**kwargs))


def test_completions_happy_path(server):
    result = run(base_url=server.url, specs=specs(3), concurrency=1, extra_body={"ignore_eos": True, "min_tokens": 6})
    assert len(result.samples) == 3
    for s in result.samples:
        assert s.ok and s.error is None and s.status == 200
        assert s.output_tokens == 6 and len(s.chunk_ns) == 6
        assert s.prompt_tokens == 4
        assert s.scheduled_ns == s.sent_ns < s.first_token_ns == s.chunk_ns[0]
        assert s.chunk_ns == sorted(s.chunk_ns) and s.chunk_ns[-1] <= s.end_ns
    assert result.started_ns == result.samples[0].sent_ns
    assert result.ended_ns == max(s.end_ns for s in result.samples)
    assert [s.sent_ns for s in result.samples] == sorted(s.sent_ns for s in result.samples)
    assert server.bodies[0] == {
        "model": "m", "prompt": "w3 w4 w5 w6", "max_tokens": 6, "stream": True,
        "stream_options": {"include_usage": True}, "ignore_eos": True, "min_tokens": 6,
    }  # fmt: skip


def test_chat_counts_content_chunks_and_takes_usage(server):
    result = run(base_url=server.url, api="chat", specs=specs(2), concurrency=2)
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "w3 w4 w5 w6"}]
    for s in result.samples:
        assert s.ok
        assert len(s.chunk_ns) == 6  # the role chunk with empty content carries no text
        assert s.prompt_tokens == 4 + TEMPLATE_TOKENS  # from the usage chunk, not the spec


def test_without_usage_counts_text_chunks(server):
    server.mode = "no_usage"
    (s,) = run(base_url=server.url, specs=specs(1, prompt_tokens=7, output_tokens=5), concurrency=1).samples
    assert s.ok and s.output_tokens == 5 and s.prompt_tokens == 7


def test_chunk_times_follow_the_stream(server):
    server.first_token_s, server.token_gap_s = 0.05, 0.02
    (s,) = run(base_url=server.url, specs=specs(1, output_tokens=5), concurrency=1).samples
    assert s.ok
    assert s.first_token_ns - s.sent_ns >= 45_000_000
    gaps = [b - a for a, b in itertools.pairwise(s.chunk_ns)]
    assert all(g >= 15_000_000 for g in gaps), gaps


def test_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connecting is refused
        result = run(base_url=f"http://127.0.0.1:{port}", specs=specs(2), concurrency=1)
    assert len(result.samples) == 2
    for s in result.samples:
        assert not s.ok and s.status == 0 and s.first_token_ns is None and s.chunk_ns == []
        assert s.error.startswith("connection failed")
        assert s.end_ns >= s.sent_ns


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_keeps_status_and_body_head(server, status):
    server.mode = f"http_{status}"
    (s,) = run(base_url=server.url, specs=specs(1), concurrency=1).samples
    assert not s.ok and s.status == status
    assert s.error.startswith(f'HTTP {status}: {{"error": "xxx')
    assert len(s.error) <= 220


def test_stream_cut_mid_response_keeps_chunks(server):
    server.mode, server.cut_after = "cut", 3
    (s,) = run(base_url=server.url, specs=specs(1, output_tokens=8), concurrency=1).samples
    assert s.status == 200 and not s.ok
    assert s.error.startswith("stream ended before [DONE]")
    assert len(s.chunk_ns) == 3 and s.output_tokens == 3


def test_stream_ending_cleanly_without_done(server):
    server.mode = "cut_clean"
    (s,) = run(base_url=server.url, specs=specs(1, output_tokens=4), concurrency=1).samples
    # Complete, as transformers serve sends every stream: a success, timed by its chunks.
    assert s.ok and s.error is None and len(s.chunk_ns) == 4 and s.output_tokens == 4


def test_blank_lines_comments_and_crlf_are_tolerated(server):
    server.mode = "noisy"
    result = run(base_url=server.url, specs=specs(2), concurrency=1)
    assert all(s.ok and len(s.chunk_ns) == 6 and s.output_tokens == 6 for s in result.samples)


def test_non_json_data_line_fails_the_request_but_keeps_reading(server):
    server.mode = "malformed"
    (s,) = run(base_url=server.url, specs=specs(1), concurrency=1).samples
    assert not s.ok and s.error.startswith("malformed SSE data: b'{not json'")
    assert len(s.chunk_ns) == 6 and s.output_tokens == 6  # the rest of the stream was still read


def test_error_object_mid_stream_fails_the_request(server):
    server.mode = "error_chunk"
    (s,) = run(base_url=server.url, specs=specs(1), concurrency=1).samples
    assert s.status == 200 and s.error.startswith("server error in stream: {'object': 'error', 'message': 'engine")
    assert len(s.chunk_ns) == 2


def test_request_that_never_finishes_times_out(server):
    server.mode = "hang"
    (s,) = run(base_url=server.url, specs=specs(1), concurrency=1, request_timeout_s=0.3).samples
    assert s.error == "timeout after 0.3s" and s.status == 200
    assert 0.25e9 <= s.end_ns - s.sent_ns < 5e9


def test_server_dying_mid_point_fails_the_rest_without_raising(server):
    server.token_gap_s, server.die_after = 0.01, 4
    result = run(base_url=server.url, specs=specs(10), concurrency=2, request_timeout_s=5)
    assert len(result.samples) == 10
    assert sum(s.ok for s in result.samples) >= 2  # those before the fourth request
    failed = [s for s in result.samples if not s.ok]
    assert len(failed) >= 6
    assert all(s.error for s in failed)


def test_open_loop_follows_the_schedule(server):
    offsets = [0.0, 0.05, 0.1, 0.2, 0.25, 0.4]
    result = run(base_url=server.url, specs=specs(6, output_tokens=2), arrivals=offsets)
    assert len(result.samples) == 6
    start = result.samples[0].scheduled_ns
    for s, offset in zip(result.samples, offsets, strict=True):
        assert s.ok
        assert s.scheduled_ns == start + round(offset * 1e9)
        assert 0 <= s.sent_ns - s.scheduled_ns < 30_000_000  # generous: a shared, noisy machine
    sent = [(s.sent_ns - start) / 1e9 for s in result.samples]
    assert sent == sorted(sent)


def test_open_loop_cap_bounds_requests_in_flight(server):
    server.token_gap_s = 0.01
    result = run(base_url=server.url, specs=specs(9), arrivals=[0.0] * 9, concurrency=3)
    assert all(s.ok for s in result.samples) and len(result.samples) == 9
    assert server.max_in_flight == 3
    # Held back by the cap, later requests are sent after their scheduled time.
    assert result.samples[-1].sent_ns - result.samples[-1].scheduled_ns > 20_000_000


def test_closed_loop_keeps_concurrency_requests_in_flight(server):
    server.token_gap_s = 0.01
    result = run(base_url=server.url, specs=specs(12), concurrency=4)
    assert all(s.ok for s in result.samples) and len(result.samples) == 12
    assert server.max_in_flight == 4


def test_connections_are_kept_alive_one_per_worker(server):
    result = run(base_url=server.url, specs=specs(12), concurrency=3)
    assert all(s.ok for s in result.samples)
    assert len(server.peers) == 3


def test_connection_closed_by_the_server_while_idle_is_replaced(server):
    # The fake closes idle keep-alive connections after 0.1 s, as uvicorn does after 5 s.
    result = run(base_url=server.url, specs=specs(2), arrivals=[0.0, 0.4])
    assert all(s.ok for s in result.samples)
    assert len(server.peers) == 2


def test_base_url_path_prefix_and_bad_urls(server):
    assert run(base_url=server.url + "/", specs=specs(1), concurrency=1).samples[0].ok
    (s,) = run(base_url=server.url + "/proxy", specs=specs(1), concurrency=1).samples  # POST /proxy/v1/completions
    assert s.status == 404 and s.error.startswith("HTTP 404: 404: Not Found")
    with pytest.raises(ConfigError, match="base_url must be http"):
        run(base_url="https://example.com", specs=specs(1), concurrency=1)


def test_duration_stops_issuing_requests(server):
    server.token_gap_s = 0.01  # ~50 ms per request
    result = run(base_url=server.url, specs=specs(1000), concurrency=2, duration_s=0.3)
    assert 2 <= len(result.samples) < 100
    assert len(server.bodies) == len(result.samples)
    assert all(s.ok for s in result.samples)
    assert all(s.sent_ns < result.started_ns + 0.3e9 for s in result.samples)
    assert result.ended_ns >= max(s.end_ns for s in result.samples)


def test_open_loop_duration_drops_later_arrivals(server):
    result = run(base_url=server.url, specs=specs(5, output_tokens=1), arrivals=[0, 0.05, 0.1, 5, 6],
                 duration_s=0.5)  # fmt: skip
    assert len(result.samples) == 3


def test_warmup_is_sent_first_and_not_measured(server):
    warm = [RequestSpec("w9", 1, 1)] * 2
    result = run(base_url=server.url, specs=specs(3), concurrency=3, warmup=warm)
    assert [b["prompt"] for b in server.bodies[:2]] == ["w9", "w9"]
    assert len(result.samples) == 3 and all(s.prompt_tokens == 4 for s in result.samples)
    assert result.started_ns > server.received_ns[1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"specs": specs(2)}, "give arrivals"),
        ({"specs": specs(2), "arrivals": [0.0]}, "1 arrival offsets for 2 requests"),
        ({"specs": specs(2), "concurrency": 0}, "concurrency must be >= 1"),
        ({"specs": specs(2), "concurrency": 1, "duration_s": 0}, "duration_s must be > 0"),
        ({"specs": specs(2), "concurrency": 1, "api": "embeddings"}, "api must be one of"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        run(base_url="http://127.0.0.1:9", **kwargs)
