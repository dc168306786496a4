"""SSEParser: any split of a valid stream gives the same payloads."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from perfci.measure.loadgen.sse import SSEParser

# A payload is one line: no CR or LF, and not empty (empty payloads are skipped by design).
payloads = st.binary(min_size=1, max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)
line_ends = st.sampled_from([b"\n", b"\r\n", b"\r"])
noise = st.sampled_from([b"", b": comment", b":", b"event: completion", b"id: 7", b"retry: 10"])


@st.composite
def streams(draw) -> tuple[bytes, list[bytes]]:
    """A stream of events, each one data line plus optional comments/fields, with mixed line ends."""
    sent = draw(st.lists(payloads, max_size=12))
    out = b""
    for payload in sent:
        for extra in draw(st.lists(noise, max_size=2)):
            out += extra + draw(line_ends)
        # "data:" without the space is allowed, except where the payload itself starts with a space.
        prefix = b"data: " if payload.startswith(b" ") or draw(st.booleans()) else b"data:"
        out += prefix + payload + draw(line_ends) + draw(line_ends)  # the blank line ends the event
    return out, sent


def feed_in_pieces(stream: bytes, cuts: list[int]) -> list[bytes]:
    parser = SSEParser()
    got: list[bytes] = []
    bounds = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    for a, b in itertools.pairwise(bounds):
        got += parser.feed(stream[a:b])
    return got


@given(streams(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=20))
def test_any_split_gives_the_same_payloads(stream_and_payloads, cuts):
    stream, sent = stream_and_payloads
    assert feed_in_pieces(stream, cuts) == sent


@given(streams())
def test_byte_by_byte(stream_and_payloads):
    stream, sent = stream_and_payloads
    parser = SSEParser()
    assert [p for i in range(len(stream)) for p in parser.feed(stream[i : i + 1])] == sent


def test_openai_stream():
    stream = b'data: {"choices":[{"text":"a"}]}\n\ndata: {"choices":[{"text":"b"}]}\n\ndata: [DONE]\n\n'
    assert SSEParser().feed(stream) == [b'{"choices":[{"text":"a"}]}', b'{"choices":[{"text":"b"}]}', b"[DONE]"]


def test_incomplete_line_waits_for_its_end():
    parser = SSEParser()
    assert parser.feed(b"data: [DO") == []
    assert parser.feed(b"NE]") == []
    assert parser.feed(b"\r") == [b"[DONE]"]
    assert parser.feed(b"\n\n") == []


def test_blank_comment_field_and_empty_data_lines_are_skipped():
    parser = SSEParser()
    assert parser.feed(b"\n\n: ping\nevent: x\nid: 1\nretry: 5\ndata:\ndata: \ndata\ndata: ok\n") == [b"ok"]
    assert parser.foreign is None


def test_a_line_of_no_sse_field_is_kept_as_foreign():
    parser = SSEParser()
    assert parser.feed(b'{"choices": []}\n<html>\ndata: ok\n') == [b"ok"]
    assert parser.foreign == b'{"choices": []}'  # the first one
