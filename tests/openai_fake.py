"""An OpenAI-compatible streaming server on 127.0.0.1 that misbehaves on demand, in its own thread and event
loop, for tests of the load generator and of whole runs (`--endpoint`)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from aiohttp import web

TEMPLATE_TOKENS = 5  # what the fake adds to a chat prompt's token count, as a chat template would


class FakeServer:
    """An OpenAI-compatible streaming server in its own thread and event loop.

    `mode` picks the behaviour of every request; streams end as vLLM's do (the last token's chunk carries
    finish_reason "length", then a usage chunk, then `data: [DONE]`) unless the mode says otherwise:
    ok; no_usage; noisy (blank lines, comments, other fields, CRLF); malformed (a non-JSON data line
    mid-stream); error_chunk (an error object mid-stream); http_500, http_404 (any http_NNN); cut
    (connection aborted after `cut_after` chunks); cut_clean (the body ends without [DONE], as transformers
    serve ends every stream); truncated (`cut_after` tokens, then [DONE] and a clean end: no finish_reason);
    short (`cut_after` tokens, finish_reason "length" and usage saying so); done_first ([DONE] before the
    finish_reason); garbage (200 text/event-stream whose body is no SSE at all); hang (headers, then nothing);
    stall (`cut_after` tokens, then nothing).
    `die_after` = n closes the listener and aborts every connection when request n arrives: later requests
    are refused.
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
        if self.mode == "garbage":
            await resp.write(b"<html>\x00\xff not an event stream\n\n")
            await resp.write_eof()
            return resp
        eol = b"\r\n" if self.mode == "noisy" else b"\n"

        async def event(obj: dict | bytes) -> None:
            data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
            if self.mode == "noisy":
                await resp.write(b": keep-alive comment" + eol + b"event: completion" + eol + eol)
            await resp.write(b"data: " + data + eol + eol)

        if chat:  # as real servers do: a first chunk with the role and no text
            await event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        await asyncio.sleep(self.first_token_s)
        sent = min(n, self.cut_after) if self.mode in ("truncated", "short", "stall") else n
        for i in range(sent):
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
            last = i == sent - 1 and self.mode not in ("truncated", "done_first")
            finish = "length" if last else None
            choice = {"index": 0, "delta": {"content": f" t{i}"}} if chat else {"index": 0, "text": f" t{i}"}
            await event({"choices": [choice | {"finish_reason": finish}]})
        if self.mode == "stall":
            await asyncio.sleep(3600)
        if self.mode == "cut_clean":
            await resp.write_eof()
            return resp
        if self.mode == "done_first":
            await event(b"[DONE]")
            await event({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
            await resp.write_eof()
            return resp
        if self.mode != "no_usage":
            words = len(prompt.split()) + (TEMPLATE_TOKENS if chat else 0)
            await event({"choices": [], "usage": {"prompt_tokens": words, "completion_tokens": sent}})
        await event(b"[DONE]")
        await resp.write_eof()
        return resp
