"""HTTP/1.1 keep-alive connections for streamed responses, on `asyncio.Protocol`.

Why not a general HTTP client: the load generator needs a receipt stamp as close to the socket as Python
gets, and little work per streamed chunk, because one event loop serves every stream of a point and work
on one chunk delays the stamps of the others. Here `data_received` stamps the read and queues it; the
de-chunking and the caller's sink (SSE, JSON) run once every socket readable in that loop turn has been
stamped, without waking a task per chunk. The request (head and body in one write) goes to the socket right
after `sent_ns` is stamped; aiohttp on Python 3.11 writes the body from a task of its own one loop turn
later, and under load that turn is long.
benchmarks/loadgen_overhead.py measures this against aiohttp and httpx (docs/benchmarks.md).

Scope: plain `http://`, POST requests, responses delimited by chunked encoding, Content-Length or close.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

BodySink = Callable[[int, bytes], None]  # (receipt stamp in perf_counter_ns, body bytes)
_MAX_HEAD = 64 * 1024


class ProtocolError(Exception):
    """The server's bytes are not HTTP/1.1 as expected."""


class ConnectionClosed(Exception):
    """The connection ended before the response did."""


class ChunkedDecoder:
    """Incremental decoder of `Transfer-Encoding: chunked`: `feed` returns the body bytes completed so far;
    `done` turns true after the last chunk and its trailers."""

    __slots__ = ("_buf", "_need", "_trailers", "done")

    def __init__(self) -> None:
        self._buf = b""
        self._need = -1  # bytes of chunk data still due; -1 while a size line is due
        self._trailers = False
        self.done = False

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        pos = 0
        while not self.done:
            if self._need < 0:  # a size line, or a trailer line after the last chunk
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if len(buf) - pos > 1024:
                        raise ProtocolError(f"chunk size line too long: {buf[pos : pos + 40]!r}")
                    break
                line, pos = buf[pos:end], end + 2
                if self._trailers:
                    self.done = not line
                    continue
                try:
                    size = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size line: {line[:40]!r}") from None
                if size == 0:
                    self._trailers = True
                else:
                    self._need = size
                continue
            if self._need:
                piece = buf[pos : pos + self._need]
                if not piece:
                    break
                out.append(piece)
                pos += len(piece)
                self._need -= len(piece)
                if self._need:
                    break
            if len(buf) - pos < 2:  # the CRLF that ends the chunk's data
                break
            if buf[pos : pos + 2] != b"\r\n":
                raise ProtocolError(f"chunk data not followed by CRLF: {buf[pos : pos + 40]!r}")
            pos += 2
            self._need = -1
        self._buf = buf[pos:]
        return out


class Exchange:
    """One request and its response. The caller makes it with a sink for the body; `ConnectionPool.send`
    fills in `sent_ns` (stamped right before the request is written) and `status`, and returns once the
    response has ended."""

    __slots__ = ("_chunked", "_ended", "_head", "_remaining", "keep_alive", "last_ns", "sent_ns", "sink", "status")

    def __init__(self, sink: BodySink):
        self.sink = sink
        self.sent_ns = time.perf_counter_ns()  # re-stamped at the write; stays the attempt time if no write
        self.last_ns = self.sent_ns  # the last read's stamp (or the write's): what an idle timeout measures from
        self.status = 0
        self.keep_alive = False
        self._head = b""
        self._chunked: ChunkedDecoder | None = None
        self._remaining: int | None = None  # Content-Length still due; None: until close (or chunked)
        self._ended: asyncio.Future[None] | None = None

    def _feed(self, now: int, data: bytes) -> bool:
        """Bytes from the connection; True once the response has ended."""
        self.last_ns = now
        if not self.status:
            data = self._read_head(data)
            if not self.status:
                return False
            if self._chunked is None and self._remaining == 0:
                return True
        if self._chunked is not None:
            for piece in self._chunked.feed(data):
                self.sink(now, piece)
            return self._chunked.done
        if self._remaining is not None:
            data, rest = data[: self._remaining], data[self._remaining :]
            self._remaining -= len(data)
            if rest:
                self.keep_alive = False  # bytes beyond the response: do not trust this connection again
        if data:
            self.sink(now, data)
        return self._remaining == 0

    def _read_head(self, data: bytes) -> bytes:
        """Collect the status line and headers; parse them once complete; return the bytes after them."""
        buf = self._head + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                raise ProtocolError("response head larger than 64 KiB")
            self._head = buf
            return b""
        lines = buf[:end].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(code)
        if 100 <= status < 200:  # an interim response (100 Continue): the real one follows
            self._head = b""
            return self._read_head(buf[end + 4 :])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        self.status = status
        self.keep_alive = version == "HTTP/1.1" and "close" not in headers.get("connection", "")
        if "chunked" in headers.get("transfer-encoding", ""):
            self._chunked = ChunkedDecoder()
        elif status in (204, 304):
            self._remaining = 0
        elif "content-length" in headers:
            try:
                self._remaining = int(headers["content-length"])
            except ValueError:
                raise ProtocolError(f"bad Content-Length: {headers['content-length'][:40]!r}") from None
        else:
            self.keep_alive = False  # the body ends when the server closes
        return buf[end + 4 :]

    def _close_delimited(self) -> bool:
        return self.status > 0 and self._chunked is None and self._remaining is None


class _Inbox:
    """Reads stamped by `data_received` and not yet parsed, from every connection of a pool.

    The first read queued schedules one callback that works the queue off; it runs after every other
    socket that became readable at the same moment has been stamped too. When many streams receive a token
    at once (a batched engine step), each read's stamp is then delayed by the other reads alone, not by the
    parsing of the other chunks."""

    __slots__ = ("_loop", "reads")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self.reads: list[tuple[int, _Connection, bytes]] = []

    def put(self, now: int, conn: _Connection, data: bytes) -> None:
        self.reads.append((now, conn, data))
        if len(self.reads) == 1:
            self._loop.call_soon(self.work_off)

    def work_off(self) -> None:
        reads, self.reads = self.reads, []
        for now, conn, data in reads:
            conn.handle(now, data)


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one exchange at a time."""

    def __init__(self, inbox: _Inbox) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._exchange: Exchange | None = None
        self._inbox = inbox

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(self, exchange: Exchange, request: bytes) -> asyncio.Future[None]:
        exchange._ended = asyncio.get_running_loop().create_future()
        self._exchange = exchange
        exchange.sent_ns = exchange.last_ns = time.perf_counter_ns()
        self.transport.write(request)  # type: ignore[union-attr]
        return exchange._ended

    def data_received(self, data: bytes) -> None:
        self._inbox.put(time.perf_counter_ns(), self, data)

    def handle(self, now: int, data: bytes) -> None:
        exchange = self._exchange
        if exchange is None:  # bytes nobody asked for: this connection cannot be trusted
            self.transport.abort()  # type: ignore[union-attr]
            return
        try:
            ended = exchange._feed(now, data)
        except ProtocolError as e:
            self._finish(e)
            self.transport.abort()  # type: ignore[union-attr]
            return
        if ended:
            self._finish(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._inbox.work_off()  # what arrived before the end
        exchange = self._exchange
        if exchange is None:
            return
        if exc is None and exchange._close_delimited():
            self._finish(None)
        else:
            what = "before the response" if not exchange.status else "mid-response"
            self._finish(ConnectionClosed(f"connection closed {what}" + (f" ({exc})" if exc else "")))

    def _finish(self, error: Exception | None) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None and exchange._ended is not None and not exchange._ended.done():
            if error is None:
                exchange._ended.set_result(None)
            else:
                exchange._ended.set_exception(error)


class ConnectionPool:
    """Keep-alive connections to one server. Connections are opened on demand and reused when idle, so
    the pool grows to the number of requests in flight and no further."""

    def __init__(self, host: str, port: int):
        """Make it inside the event loop that will use it."""
        self.host, self.port = host, port
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._inbox = _Inbox(asyncio.get_running_loop())
        self._host_header = f"Host: {host}:{port}\r\n".encode()

    async def send(self, exchange: Exchange, path: str, headers: dict[str, str], body: bytes) -> None:
        """POST `body` to `path` and wait for the response to end (its body goes to the exchange's sink).

        Raises OSError when no connection can be made, ConnectionClosed or ProtocolError when the response
        breaks off; a cancelled send (a timeout around it) closes its connection.
        """
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (f"POST {path} HTTP/1.1\r\n".encode() + self._host_header + head.encode()
                   + b"Content-Length: %d\r\n\r\n" % len(body) + body)  # fmt: skip
        conn = await self._checkout()
        ended = False
        try:
            await conn.start(exchange, request)
            ended = True
        finally:
            if ended and exchange.keep_alive and not conn.closed:
                self._idle.append(conn)
            else:
                self._discard(conn)

    async def _checkout(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
            self._open.discard(conn)
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Connection(self._inbox), self.host, self.port)
        self._open.add(conn)
        return conn

    def _discard(self, conn: _Connection) -> None:
        self._open.discard(conn)
        if conn.transport is not None and not conn.closed:
            conn.transport.abort()

    def close(self) -> None:
        for conn in list(self._open):
            self._discard(conn)
        self._idle.clear()
