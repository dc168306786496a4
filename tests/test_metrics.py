"""Metrics: the vllm bench serve definitions, checked by hand on small cases and by properties."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfci.config import Slo
from perfci.measure.aggregate import compact_requests, request_times, stats, summarize
from perfci.measure.loadgen.client import RequestSample

MS = 1_000_000


def sample(sent_ms, chunks_ms, *, out=None, prompt=10, status=200, error=None):
    chunks = [int(c * MS) for c in chunks_ms]
    return RequestSample(
        scheduled_ns=int(sent_ms * MS), sent_ns=int(sent_ms * MS), first_token_ns=chunks[0] if chunks else None,
        chunk_ns=chunks, end_ns=chunks[-1] if chunks else int(sent_ms * MS), prompt_tokens=prompt,
        output_tokens=len(chunks) if out is None else out, status=status, error=error,
    )


def test_definitions_by_hand():
    s = sample(0, [100, 110, 130, 160])  # TTFT 100, gaps 10 20 30, E2E 160
    t = request_times(s, 0)
    assert t.ttft_ms == pytest.approx(100)
    assert t.e2e_ms == pytest.approx(160)
    assert t.tpot_ms == pytest.approx((160 - 100) / 3)
    assert t.itl_ms == pytest.approx((10, 20, 30))


def test_tpot_uses_usage_tokens_not_chunks():
    # An engine may pack several tokens in one chunk: TPOT divides by the tokens, ITL stays per chunk.
    t = request_times(sample(0, [50, 150], out=11), 0)
    assert t.tpot_ms == pytest.approx(10)
    assert t.itl_ms == pytest.approx((100,))


def test_summarize_rates_goodput_and_errors():
    samples = [
        sample(0, [100, 110, 120]),
        sample(0, [300, 310, 320]),  # TTFT 300: breaks a 200 ms SLO
        sample(500, [], status=500, error="HTTP 500"),
    ]
    m = summarize(samples, started_ns=0, ended_ns=1000 * MS, slo=Slo(ttft_ms=200))
    assert m["requests"] == 3 and m["completed"] == 2 and m["errors"] == 1
    assert m["error_rate"] == pytest.approx(1 / 3)
    assert m["request_rate"] == pytest.approx(2.0)
    assert m["output_throughput"] == pytest.approx(6.0)
    assert m["total_throughput"] == pytest.approx(26.0)
    assert m["goodput"] == pytest.approx(1.0)
    assert m["slo_met"] is False  # p99 of TTFT is above 200
    assert m["ttft_ms"]["p50"] == pytest.approx(200)
    assert m["itl_ms"]["max"] == pytest.approx(10)


def test_no_slo_means_no_goodput_and_all_failed_point():
    m = summarize([sample(0, [], status=0, error="refused")], started_ns=0, ended_ns=MS, slo=Slo())
    assert m["goodput"] is None and m["slo_met"] is None
    assert m["completed"] == 0 and m["error_rate"] == 1.0
    assert m["ttft_ms"] == dict.fromkeys(["mean", "std", "p50", "p90", "p95", "p99", "max"])


def test_stats_match_numpy_and_ignore_nan():
    values = [3.0, 1.0, float("nan"), 2.0, 10.0]
    s = stats(values)
    finite = [3.0, 1.0, 2.0, 10.0]
    assert s["p99"] == pytest.approx(np.percentile(finite, 99))
    assert s["std"] == pytest.approx(np.std(finite, ddof=1))
    assert stats([]) == dict.fromkeys(s)


chunks = st.lists(st.floats(min_value=0.01, max_value=50, allow_nan=False), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=0, max_value=1000), st.floats(min_value=0.1, max_value=500), chunks),
                min_size=1, max_size=20))
def test_properties(requests):
    samples = []
    for sent, ttft, gaps in requests:
        times = [sent + ttft]
        for g in gaps[1:]:
            times.append(times[-1] + g)
        samples.append(sample(sent, times))
    end = max(s.chunk_ns[-1] for s in samples)
    m = summarize(samples, started_ns=0, ended_ns=end + 1, slo=Slo(ttft_ms=100))
    assert m["completed"] == len(samples)
    for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        st_ = m[name]
        if st_["mean"] is None:
            continue
        assert st_["p50"] <= st_["p90"] + 1e-9 <= st_["p95"] + 2e-9 <= st_["p99"] + 3e-9 <= st_["max"] + 4e-9
    assert m["ttft_ms"]["max"] <= m["e2e_ms"]["max"] + 1e-6
    assert 0 <= m["goodput"] <= m["request_rate"] + 1e-9
    # E2E = TTFT + (out - 1) * TPOT for every request with more than one token
    for s in samples:
        t = request_times(s, 0)
        if t.tpot_ms is not None:
            assert math.isclose(t.e2e_ms, t.ttft_ms + (s.output_tokens - 1) * t.tpot_ms, rel_tol=1e-9, abs_tol=1e-6)


def test_compact_requests_are_columnar_and_equal_length():
    samples = [sample(0, [10, 20]), sample(5, [], status=0, error="refused")]
    c = compact_requests(samples, 0)
    assert {len(v) for v in c.values()} == {2}
    assert c["ttft_ms"] == [10.0, None] and c["itl_ms"] == [[10.0], []]
    assert c["error"] == [None, "refused"]
