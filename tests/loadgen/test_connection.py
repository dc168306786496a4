"""The HTTP/1.1 streaming connection: chunked decoding (property-tested) and responses from a raw TCP server
that writes exactly the bytes each test wants."""

from __future__ import annotations

import asyncio
import itertools
from typing import Self

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfci.measure.loadgen.connection import (
    ChunkedDecoder,
    ConnectionClosed,
    ConnectionPool,
    Exchange,
    ProtocolError,
)


@st.composite
def chunked_bodies(draw) -> tuple[bytes, bytes]:
    pieces = draw(st.lists(st.binary(min_size=1, max_size=50), max_size=8))
    wire = b""
    for p in pieces:
        ext = draw(st.sampled_from([b"", b";name=value"]))
        size = draw(st.sampled_from(["%x", "%X", "%04x"])) % len(p)
        wire += size.encode() + ext + b"\r\n" + p + b"\r\n"
    trailers = draw(st.sampled_from([b"", b"X-Trailer: 1\r\n"]))
    return wire + b"0\r\n" + trailers + b"\r\n", b"".join(pieces)


@given(chunked_bodies(), st.lists(st.integers(min_value=0, max_value=1000), max_size=10))
def test_any_split_of_a_chunked_body_decodes_the_same(body_and_wire, cuts):
    wire, body = body_and_wire
    decoder = ChunkedDecoder()
    bounds = [0, *sorted(c % (len(wire) + 1) for c in cuts), len(wire)]
    out = b"".join(b"".join(decoder.feed(wire[a:b])) for a, b in itertools.pairwise(bounds))
    assert out == body
    assert decoder.done


def test_chunked_stops_at_the_end_and_rejects_garbage():
    decoder = ChunkedDecoder()
    assert decoder.feed(b"3\r\nabc\r\n") == [b"abc"] and not decoder.done
    assert decoder.feed(b"0\r\n\r\n") == [] and decoder.done
    with pytest.raises(ProtocolError, match="bad chunk size"):
        ChunkedDecoder().feed(b"zz\r\nabc\r\n")
    with pytest.raises(ProtocolError, match="not followed by CRLF"):
        ChunkedDecoder().feed(b"3\r\nabcX\r\n")
    with pytest.raises(ProtocolError, match="too long"):
        ChunkedDecoder().feed(b"1" * 2000)


class RawServer:
    """Answers every request on a connection with the next canned reply (bytes), then optionally closes."""

    def __init__(self, replies: list[bytes], close_after: bool = False):
        self.replies, self.close_after = list(replies), close_after
        self.requests: list[bytes] = []
        self.connections = 0

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n")
                              if h.lower().startswith(b"content-length"))  # fmt: skip
                self.requests.append(head + await reader.readexactly(length))
                writer.write(self.replies.pop(0))
                await writer.drain()
                if self.close_after:
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()


async def exchange(pool: ConnectionPool) -> tuple[Exchange, list[bytes]]:
    got: list[bytes] = []
    ex = Exchange(lambda now, data: got.append(data))
    await pool.send(ex, "/v1/completions", {"Content-Type": "application/json"}, b'{"a": 1}')
    return ex, got


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_request_bytes_and_keep_alive_reuse():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"

    async def main():
        async with RawServer([chunked, chunked]) as srv:
            pool = ConnectionPool("127.0.0.1", srv.port)
            for _ in range(2):
                ex, got = await exchange(pool)
                assert ex.status == 200 and b"".join(got) == b"hello"
            pool.close()
            return srv

    srv = run(main())
    assert srv.connections == 1
    assert srv.requests[0] == (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json"
                               b"\r\nContent-Length: 8\r\n\r\n{\"a\": 1}" % srv.port)  # fmt: skip


@pytest.mark.parametrize(
    ("reply", "body"),
    [
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", b"not found"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil the server closes", b"until the server closes"),
    ],
)
def test_response_framings(reply, body):
    async def main():
        async with RawServer([reply], close_after=True) as srv:
            pool = ConnectionPool("127.0.0.1", srv.port)
            ex, got = await exchange(pool)
            pool.close()
            return ex, b"".join(got)

    ex, got = run(main())
    assert got == body
    assert ex.status == int(reply.rsplit(b"HTTP/1.", 1)[1][2:5])


def test_server_closing_an_idle_connection_is_not_reused():
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def main():
        async with RawServer([reply, reply], close_after=True) as srv:
            pool = ConnectionPool("127.0.0.1", srv.port)
            await exchange(pool)
            await asyncio.sleep(0.05)  # the server's close reaches the idle connection
            ex, _ = await exchange(pool)
            pool.close()
            return srv, ex

    srv, ex = run(main())
    assert ex.status == 200 and srv.connections == 2


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (b"", ConnectionClosed, "before the response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", ConnectionClosed, "mid-response"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", ConnectionClosed, "mid-response"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", ProtocolError, "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", ProtocolError, "bad Content-Length"),
    ],
)
def test_broken_responses_raise(reply, error, message):
    async def main():
        async with RawServer([reply], close_after=True) as srv:
            pool = ConnectionPool("127.0.0.1", srv.port)
            try:
                await exchange(pool)
            finally:
                pool.close()

    with pytest.raises(error, match=message):
        run(main())


def test_refused_connection_raises_oserror():
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        await exchange(ConnectionPool("127.0.0.1", port))

    with pytest.raises(ConnectionRefusedError):
        run(main())
