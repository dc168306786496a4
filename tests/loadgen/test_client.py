"""run_point against a real streaming HTTP server on 127.0.0.1 that misbehaves on demand (tests/openai_fake.py)."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time

import pytest

from perfci.errors import ConfigError
from perfci.measure.loadgen.client import RequestSpec, run_point
from tests.openai_fake import TEMPLATE_TOKENS, FakeServer


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
        assert s.error.startswith("connection failed") and s.error_kind == "connection"
        assert s.end_ns >= s.sent_ns


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_keeps_status_and_body_head(server, status):
    server.mode = f"http_{status}"
    (s,) = run(base_url=server.url, specs=specs(1), concurrency=1).samples
    assert not s.ok and s.status == status and s.error_kind == f"http_{status // 100}xx"
    assert s.error.startswith(f'HTTP {status}: {{"error": "xxx')
    assert len(s.error) <= 220


def test_stream_cut_mid_response_keeps_chunks(server):
    server.mode, server.cut_after = "cut", 3
    (s,) = run(base_url=server.url, specs=specs(1, output_tokens=8), concurrency=1).samples
    assert s.status == 200 and not s.ok and s.error_kind == "stream_cut"
    assert s.error.startswith("stream ended before [DONE]")
    assert len(s.chunk_ns) == 3 and s.output_tokens == 3


def test_stream_that_ends_cleanly_without_a_finish_reason_is_not_a_success(server):
    server.mode, server.cut_after = "truncated", 3  # 3 of 16 tokens, then [DONE] and a clean end
    (s,) = run(base_url=server.url, specs=specs(1, output_tokens=16), concurrency=1).samples
    assert not s.ok and s.error_kind == "no_finish" and s.output_tokens == 3
    assert s.error == "the stream ended without a finish_reason after 3 tokens"


def test_done_before_the_finish_reason_is_not_a_success(server):
    server.mode = "done_first"
    (s,) = run(base_url=server.url, specs=specs(1), concurrency=1).samples
    assert not s.ok and s.error_kind == "no_finish" and "[DONE] came first" in s.error


def test_fewer_tokens_than_max_tokens_with_ignore_eos_is_a_short_output(server):
    server.mode, server.cut_after = "short", 3  # finish_reason "length" and usage, after 3 of 8 tokens
    (s,) = run(base_url=server.url, specs=specs(1, output_tokens=8), concurrency=1,
               extra_body={"ignore_eos": True}).samples  # fmt: skip
    assert not s.ok and s.error_kind == "short_output"
    assert s.error == "3 output tokens for max_tokens=8 with ignore_eos (finish_reason 'length')"


def test_fewer_tokens_without_ignore_eos_is_a_success(server):
    server.mode, server.cut_after = "short", 3  # the model may stop early when EOS is not ignored
    (s,) = run(base_url=server.url, specs=specs(1, output_tokens=8), concurrency=1).samples
    assert s.ok and s.error_kind is None and s.output_tokens == 3


def test_without_usage_ignore_eos_counts_text_chunks(server):
    server.mode = "no_usage"
    (s,) = run(base_url=server.url, specs=specs(1, output_tokens=5), concurrency=1,
               extra_body={"ignore_eos": True}).samples  # fmt: skip
    assert s.ok and s.output_tokens == 5


def test_a_body_that_is_not_an_event_stream_is_bad_sse(server):
    server.mode = "garbage"
    (s,) = run(base_url=server.url, specs=specs(1), concurrency=1).samples
    assert s.status == 200 and not s.ok and s.error_kind == "bad_sse"
    assert s.error.startswith("not an event stream: b'<html>")


def test_a_stream_that_goes_silent_is_cut_by_the_idle_timeout(server):
    server.mode, server.cut_after = "stall", 2
    (s,) = run(base_url=server.url, specs=specs(1), concurrency=1, request_timeout_s=60, idle_timeout_s=0.3).samples
    assert not s.ok and s.error_kind == "timeout" and s.error == "no data for 0.3s (idle timeout)"
    assert len(s.chunk_ns) == 2
    assert s.end_ns - s.chunk_ns[-1] >= 0.25e9


def test_a_slow_but_steady_stream_outlives_the_idle_timeout(server):
    server.token_gap_s = 0.1  # 8 tokens over ~0.7 s, each gap under the 0.3 s idle timeout
    (s,) = run(base_url=server.url, specs=specs(1, output_tokens=8), concurrency=1, idle_timeout_s=0.3).samples
    assert s.ok and s.output_tokens == 8


def test_warmups_get_their_own_shorter_timeout(server):
    server.mode = "hang"
    result = run(base_url=server.url, specs=specs(1), concurrency=1, warmup=specs(1), request_timeout_s=0.6,
                 warmup_timeout_s=0.2, stall_after=None)  # fmt: skip
    assert result.samples[0].error == "timeout after 0.6s"
    assert result.started_ns - server.received_ns[0] < 0.55e9  # the warmup gave up after ~0.2 s


def test_a_stalled_server_stops_the_point_after_k_timeouts_in_a_row(server):
    server.mode = "hang"
    result = run(base_url=server.url, specs=specs(12), concurrency=1, warmup=specs(1), request_timeout_s=30,
                 idle_timeout_s=0.2, stall_after=3)  # fmt: skip
    assert len(server.bodies) == 3  # one warmup and two measured requests, then nothing more was sent
    assert [s.error_kind for s in result.samples] == ["timeout", "timeout"]
    assert result.unsent == 10 and result.stopped.startswith("engine stalled: 3 requests in a row timed out")


def test_refused_connections_stop_the_point_after_k_in_a_row():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = run(base_url=f"http://127.0.0.1:{port}", specs=specs(10), concurrency=4, stall_after=3)
    assert 3 <= len(result.samples) <= 6 and all(s.error_kind == "connection" for s in result.samples)
    assert result.unsent == 10 - len(result.samples) and result.stopped.startswith("engine stalled")


def test_a_deadline_stops_sending_and_counts_the_rest(server):
    server.token_gap_s = 0.01
    stop_at = time.perf_counter_ns() + 300_000_000
    result = run(base_url=server.url, specs=specs(1000), concurrency=2, stop_at_ns=stop_at)
    assert 2 <= len(result.samples) < 1000 and all(s.ok for s in result.samples)
    assert result.stopped == "run deadline reached" and result.unsent == 1000 - len(result.samples)
    offsets = [0.0, 0.1, 5.0, 6.0]
    result = run(base_url=server.url, specs=specs(4, output_tokens=1), arrivals=offsets,
                 stop_at_ns=time.perf_counter_ns() + 1_000_000_000)  # fmt: skip
    assert len(result.samples) == 2 and result.unsent == 2 and result.stopped == "run deadline reached"


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
    assert not s.ok and s.error_kind == "bad_sse" and s.error.startswith("malformed SSE data: b'{not json'")
    assert len(s.chunk_ns) == 6 and s.output_tokens == 6  # the rest of the stream was still read


def test_error_object_mid_stream_fails_the_request(server):
    server.mode = "error_chunk"
    (s,) = run(base_url=server.url, specs=specs(1), concurrency=1).samples
    assert s.status == 200 and s.error_kind == "stream_error"
    assert s.error.startswith("server error in stream: {'object': 'error', 'message': 'engine")
    assert len(s.chunk_ns) == 2


def test_request_that_never_finishes_times_out(server):
    server.mode = "hang"
    (s,) = run(base_url=server.url, specs=specs(1), concurrency=1, request_timeout_s=0.3).samples
    assert s.error == "timeout after 0.3s" and s.status == 200 and s.error_kind == "timeout"
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
        ({"specs": specs(2), "concurrency": 1, "idle_timeout_s": 0}, "idle_timeout_s must be > 0, got 0"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        run(base_url="http://127.0.0.1:9", **kwargs)
