"""The `sim` engine: an OpenAI-compatible streaming server that SIMULATES an LLM engine.

No model is loaded and nothing is computed: a scheduler task paces tokens by a latency model (`config.Sim`)
so that perfci's tests, demos and bisect experiments get a server that behaves like a continuously batching
engine in seconds. It says so everywhere: every log line, `owned_by` in /v1/models, `system_fingerprint` in
responses and an `x-perfci-simulator: 1` header on every response.

    python -m perfci.measure.simulator --host 127.0.0.1 --port 8000 --model tiny \
        [--config JSON | --config-file PATH] [--latency-file PATH] [--cache-dir DIR]

Startup takes `startup_s`, split into load_weights, compile and warmup as a real engine logs them. With
`--cache-dir`, compile behaves like torch.compile's cache: without an entry for this model and latency model it
takes its full share and writes one; with an entry it takes `CACHED_COMPILE_SHARE` of that (a cache load).

Latency model, one scheduler step at a time (continuous batching, prefill mixed into decode steps as vLLM's
chunked prefill does): a step admits waiting requests while fewer than `max_batch` are active; each admitted
request adds `first_token_ms + prefill_ms_per_token × prompt_tokens` to the step and gets its first token
when the step ends; every request already decoding gets one more token and adds, once for the step,
`decode_ms_per_token × (1 + slowdown_per_request × (decoding − 1))`. With `start_noise`, every step and
startup phase of one start is scaled by that start's speed factor (drawn once per start), so starts differ
as a real engine's do. Prompt tokens are whitespace-separated words. A request always generates exactly
`max_tokens` tokens ("w123 ", one per SSE chunk).

Faults, drawn per request from an RNG seeded by `seed`, in arrival order: `error_rate` answers HTTP 500
before any token; `drop_rate` closes the connection after half the tokens (no `[DONE]`; a non-streaming
request gets no response at all); `malformed_rate` sends one `data: {not json` line into a stream after half
the tokens, then goes on normally.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import math
import random
import signal
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import ValidationError

from perfci.config import Sim, format_validation_error
from perfci.errors import ConfigError

NAME = "perfci-sim (SIMULATOR)"
OWNER = "perfci-simulator"
HEADER = "x-perfci-simulator"
# Startup phases and their shares of `startup_s`, logged as a real engine logs them.
STARTUP_PHASES = (("load_weights", 0.50), ("compile", 0.35), ("warmup", 0.15))
CACHED_COMPILE_SHARE = 0.1  # a compile that finds its cache entry loads it in this share of the full time
# In-flight streams get this long to finish after SIGTERM; then they are cut, so exit takes under a second.
SHUTDOWN_GRACE_S = 0.5
VOCAB_SIZE = 1000
MALFORMED_LINE = b"data: {not json\n\n"

Api = Literal["completions", "chat"]
Log = Callable[[str], None]


def log_to_stderr(message: str) -> None:
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    print(f"{stamp} {NAME} {message}", file=sys.stderr, flush=True)


# --- configuration --------------------------------------------------------------------------------------


def load_config(config_json: str | None = None, config_file: Path | None = None,
                latency_file: Path | None = None) -> Sim:
    """The latency model: `--config` JSON or `--config-file`, with `--latency-file` keys overriding them."""
    source, data = "defaults", {}
    if config_json is not None:
        source = "--config"
        try:
            data = json.loads(config_json)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config: not valid JSON: {e}") from e
    elif config_file is not None:
        source, data = str(config_file), _read_mapping(config_file)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the simulator config must be an object of Sim keys, got {data!r}")
    sim = _validate(source, data)
    if latency_file is not None:
        sim = _validate(str(latency_file), {**data, **_read_mapping(latency_file)})
    return sim


def _read_mapping(path: Path) -> dict[str, Any]:
    """A TOML (by suffix) or JSON file holding one object."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read simulator config ({e.strerror})") from e
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the simulator config must be an object of Sim keys, got {data!r}")
    return data


def _validate(source: str, data: dict[str, Any]) -> Sim:
    try:
        return Sim.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(source, e, what="simulator config")) from e


# --- latency model and scheduler ------------------------------------------------------------------------


def step_ms(sim: Sim, decoding: int, admitted_prompt_tokens: Sequence[int]) -> float:
    """Duration of one scheduler step with `decoding` requests decoding and these requests admitted."""
    decode = sim.decode_ms_per_token * (1 + sim.slowdown_per_request * (decoding - 1)) if decoding else 0.0
    prefill = sum(sim.first_token_ms + sim.prefill_ms_per_token * p for p in admitted_prompt_tokens)
    return decode + prefill


def start_factor(sim: Sim) -> float:
    """This start's speed factor: log-normal with median 1 and relative spread `start_noise`."""
    if not sim.start_noise:
        return 1.0
    rng = random.Random(sim.start_seed) if sim.start_seed is not None else random.SystemRandom()
    return math.exp(rng.gauss(0.0, math.log1p(sim.start_noise)))


@dataclass(eq=False)
class Generation:
    """One request inside the scheduler; its handler awaits `next_token` once per token."""

    prompt_tokens: int
    max_tokens: int
    generated: int = 0
    aborted: bool = False
    _tokens: asyncio.Queue[None] = field(default_factory=asyncio.Queue)

    @property
    def done(self) -> bool:
        return self.aborted or self.generated >= self.max_tokens

    def emit(self) -> None:
        self.generated += 1
        self._tokens.put_nowait(None)

    async def next_token(self) -> None:
        await self._tokens.get()


class Scheduler:
    """Continuous batching on the event loop's clock. Steps follow absolute deadlines, so the time the loop
    takes to wake up and deliver tokens is absorbed by the next step instead of accumulating."""

    def __init__(self, sim: Sim):
        self.sim = sim
        self.speed = start_factor(sim)
        self.waiting: collections.deque[Generation] = collections.deque()
        self.running: list[Generation] = []
        self._work = asyncio.Event()

    def submit(self, gen: Generation) -> None:
        self.waiting.append(gen)
        self._work.set()

    def abort(self, gen: Generation) -> None:
        """Forget a request whose client is gone (or that finished): it frees its batch slot."""
        gen.aborted = True
        if gen in self.waiting:
            self.waiting.remove(gen)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            if not self.running and not self.waiting:
                self._work.clear()
                await self._work.wait()
                start = loop.time()  # idle until now: the next step starts at arrival, not at an old deadline
            admitted = []
            while self.waiting and len(self.running) + len(admitted) < self.sim.max_batch:
                admitted.append(self.waiting.popleft())
            decoding = self.running
            step = step_ms(self.sim, len(decoding), [g.prompt_tokens for g in admitted]) * self.speed
            deadline = start + step / 1000
            await asyncio.sleep(deadline - loop.time())
            stepped = [g for g in decoding + admitted if not g.aborted]
            for gen in stepped:
                gen.emit()
            self.running = [g for g in stepped if not g.done]
            start = deadline


# --- requests -------------------------------------------------------------------------------------------


class InvalidRequest(Exception):
    """A request the server refuses, answered as an OpenAI error object."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400,
                 kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.kind, self.code = param, status, kind, code

    def response(self) -> web.Response:
        return error_response(str(self), status=self.status, kind=self.kind, param=self.param, code=self.code)


def error_response(message: str, *, status: int, kind: str, param: str | None = None,
                   code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status)


@dataclass(frozen=True)
class GenRequest:
    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool


def parse_request(body: object, api: Api, served_model: str) -> GenRequest:
    """Validate an OpenAI completions/chat body. `ignore_eos` and `min_tokens` are accepted and have nothing
    to change: the simulator always generates exactly `max_tokens` tokens."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model", served_model)
    if model != served_model:
        raise InvalidRequest(f"The model `{model}` does not exist (this simulator serves `{served_model}`).",
                             param="model", status=404, code="model_not_found")
    if api == "completions":
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise InvalidRequest(f"prompt must be a single string, got {_kind(prompt)}", param="prompt")
        prompt_tokens = len(prompt.split())
    else:
        prompt_tokens = _chat_prompt_tokens(body.get("messages"))
    key = "max_completion_tokens" if api == "chat" and "max_completion_tokens" in body else "max_tokens"
    max_tokens = body.get(key, 16)
    if type(max_tokens) is not int or max_tokens < 1:
        raise InvalidRequest(f"{key} must be an integer >= 1, got {max_tokens!r}", param=key)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest(f"stream must be a boolean, got {stream!r}", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise InvalidRequest(f"stream_options must be {{\"include_usage\": bool}}, got {options!r}",
                             param="stream_options")
    return GenRequest(prompt_tokens, max_tokens, stream, options.get("include_usage", False))


def _chat_prompt_tokens(messages: object) -> int:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(f"messages must be a non-empty list, got {_kind(messages)}", param="messages")
    words = 0
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise InvalidRequest(f"messages[{i}] must be an object with a string content", param="messages")
        words += len(content.split())
    return words


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


@dataclass(frozen=True)
class Faults:
    error: bool
    drop: bool
    malformed: bool


def draw_faults(sim: Sim, rng: random.Random) -> Faults:
    """Always three draws, so a given seed injects the same faults into the same request numbers."""
    error, drop, malformed = rng.random(), rng.random(), rng.random()
    return Faults(error < sim.error_rate, drop < sim.drop_rate, malformed < sim.malformed_rate)


# --- HTTP -----------------------------------------------------------------------------------------------


class Simulator:
    """The HTTP endpoints over one scheduler."""

    def __init__(self, model: str, sim: Sim):
        self.model, self.sim = model, sim
        self.scheduler = Scheduler(sim)
        self.fault_rng = random.Random(sim.seed)
        self.requests = 0
        self.created = int(time.time())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.on_response_prepare.append(_mark_simulated)
        app.cleanup_ctx.append(self._run_scheduler)
        return app

    async def _run_scheduler(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self.scheduler.run())
        yield
        task.cancel()

    async def health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def models(self, request: web.Request) -> web.Response:
        card = {"id": self.model, "object": "model", "created": self.created, "owned_by": OWNER}
        return web.json_response({"object": "list", "data": [card]})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "completions")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "chat")

    async def _generate(self, request: web.Request, api: Api) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError as e:
            return InvalidRequest(f"the request body is not valid JSON: {e}").response()
        try:
            req = parse_request(body, api, self.model)
        except InvalidRequest as e:
            return e.response()
        self.requests += 1
        faults = draw_faults(self.sim, self.fault_rng)
        if faults.error:
            return error_response(f"{NAME}: injected fault (error_rate={self.sim.error_rate})",
                                  status=500, kind="server_error")
        gen = Generation(req.prompt_tokens, req.max_tokens)
        shape = ResponseShape(api, f"{'chatcmpl' if api == 'chat' else 'cmpl'}-sim-{self.requests}",
                              int(time.time()), self.model, random.Random(f"{self.sim.seed}/{self.requests}"))
        fault_at = (req.max_tokens + 1) // 2  # tokens sent before a drop or a garbled line
        self.scheduler.submit(gen)
        try:
            if not req.stream:
                for _ in range(req.max_tokens):
                    await gen.next_token()
                if faults.drop:
                    return _cut(request)
                return web.json_response(shape.whole(req))
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                                   "Cache-Control": "no-cache"})
            await response.prepare(request)
            for i in range(req.max_tokens):
                await gen.next_token()
                await response.write(shape.token_chunk(i, last=i == req.max_tokens - 1))
                if i + 1 == fault_at and faults.drop:
                    return _cut(request, response)
                if i + 1 == fault_at and faults.malformed:
                    await response.write(MALFORMED_LINE)
            if req.include_usage:
                await response.write(shape.usage_chunk(req))
            await response.write(b"data: [DONE]\n\n")
            return response
        finally:
            self.scheduler.abort(gen)


def _cut(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    """Close the connection without finishing the response (the `drop_rate` fault)."""
    if request.transport is not None:  # None: the client is gone already
        request.transport.close()
    return response or web.Response()


async def _mark_simulated(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[HEADER] = "1"


@dataclass(frozen=True)
class ResponseShape:
    """OpenAI response bodies of one request (completions or chat), as vLLM streams them."""

    api: Api
    id: str
    created: int
    model: str
    rng: random.Random

    def _envelope(self, chunk: bool) -> dict[str, Any]:
        obj = {"completions": "text_completion", "chat": "chat.completion.chunk" if chunk else "chat.completion"}
        return {"id": self.id, "object": obj[self.api], "created": self.created, "model": self.model,
                "system_fingerprint": OWNER}

    def _token(self) -> str:
        return f"w{self.rng.randrange(VOCAB_SIZE)} "

    def token_chunk(self, index: int, last: bool) -> bytes:
        finish = "length" if last else None
        if self.api == "completions":
            choice = {"index": 0, "text": self._token(), "logprobs": None, "finish_reason": finish}
        else:
            delta = {"role": "assistant", "content": self._token()} if index == 0 else {"content": self._token()}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**self._envelope(chunk=True), "choices": [choice]})

    def usage_chunk(self, req: GenRequest) -> bytes:
        return _sse({**self._envelope(chunk=True), "choices": [], "usage": _usage(req)})

    def whole(self, req: GenRequest) -> dict[str, Any]:
        text = "".join(self._token() for _ in range(req.max_tokens))
        if self.api == "completions":
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
        else:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": "length"}
        return {**self._envelope(chunk=False), "choices": [choice], "usage": _usage(req)}


def _usage(req: GenRequest) -> dict[str, int]:
    return {"prompt_tokens": req.prompt_tokens, "completion_tokens": req.max_tokens,
            "total_tokens": req.prompt_tokens + req.max_tokens}


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


# --- process --------------------------------------------------------------------------------------------


def compile_entry(cache_dir: Path, model: str, sim: Sim) -> Path:
    """The compile cache entry of this model under this latency model (a config hash, as engines key theirs)."""
    digest = hashlib.sha256(f"{model}\0{sim.model_dump_json()}".encode()).hexdigest()[:16]
    return cache_dir / f"{model}-{digest}.compiled"


async def serve(host: str, port: int, model: str, sim: Sim, log: Log = log_to_stderr,
                cache_dir: Path | None = None) -> None:  # fmt: skip
    """Start up in phases (port unbound), serve until SIGTERM/SIGINT, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    this = asyncio.current_task()
    assert this is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, this.cancel)
    log(f"starting: model={model} (nothing is loaded: this is a simulator), "
        f"latency model {sim.model_dump_json()}")
    simulator = Simulator(model, sim)
    runner = web.AppRunner(simulator.app(), handler_cancellation=True, access_log=None,
                           shutdown_timeout=SHUTDOWN_GRACE_S)
    try:
        entry = compile_entry(cache_dir, model, sim) if cache_dir is not None else None
        for phase, share in STARTUP_PHASES:
            began = loop.time()
            cached = phase == "compile" and entry is not None and entry.is_file()
            share_now = share * (CACHED_COMPILE_SHARE if cached else 1)
            await asyncio.sleep(sim.startup_s * share_now * simulator.scheduler.speed)
            if phase == "compile" and entry is not None and not cached:
                entry.parent.mkdir(parents=True, exist_ok=True)
                entry.write_text(sim.model_dump_json())
            log(f"{phase} took {loop.time() - began:.3f} s" + (" (from the compile cache)" if cached else ""))
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log(f"serving on http://{host}:{port}")
        log("Application startup complete.")
        await asyncio.Future()  # until a signal cancels this task
    except asyncio.CancelledError:
        log("shutting down (signal received)")
    finally:
        await runner.cleanup()
    log("shutdown complete")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perfci.measure.simulator",
                                     description=f"{NAME}: an OpenAI-compatible LLM engine simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True, help="the model name to serve")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="JSON object of perfci.config.Sim keys")
    source.add_argument("--config-file", type=Path, help="TOML or JSON file of Sim keys")
    parser.add_argument("--latency-file", type=Path, help="TOML or JSON file of Sim keys overriding --config")
    parser.add_argument("--cache-dir", type=Path, help="compile cache directory (none: every compile is full)")
    args = parser.parse_args(argv)
    try:
        sim = load_config(args.config, args.config_file, args.latency_file)
    except ConfigError as e:
        print(f"{NAME}: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    try:
        asyncio.run(serve(args.host, args.port, args.model, sim, cache_dir=args.cache_dir))
    except OSError as e:  # the port is taken or the host is not ours
        log_to_stderr(f"cannot serve on {args.host}:{args.port}: {e.strerror or e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
