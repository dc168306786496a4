"""`perfci export` and the store's views (migration 0010): tables and views out as CSV, JSON lines and Parquet,
read back by pandas as a user would."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas
import pytest

from perfci.errors import EXIT_OK, EXIT_USAGE
from perfci.store import imports, open_db

FOREIGN = Path(__file__).parent / "fixtures" / "foreign"


def perfci(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfci", *args], cwd=cwd, capture_output=True, timeout=120,
                          env=os.environ.copy())  # fmt: skip


@pytest.fixture
def store_dir(tmp_path, record_dict):
    db = open_db(tmp_path / "perfci.db")
    report = imports.ingest_files(db, [FOREIGN / "vllm-bench-serve.json", FOREIGN / "guidellm.json"], hardware="cpu-x")
    assert not report.refused
    record_dict["points"][1]["telemetry"] = {"samples": 3, "gpu_util": {"min": 10, "mean": 20.5, "max": 31}}
    own = tmp_path / "own.json"
    own.write_text(json.dumps(record_dict))
    assert not imports.ingest_files(db, [own]).refused
    db.close()
    return tmp_path


@pytest.mark.integration  # starts perfci as a process
def test_points_export_as_csv_round_trips_through_pandas(store_dir):
    done = perfci("export", "--table", "points", cwd=store_dir)
    assert done.returncode == EXIT_OK, done.stderr
    frame = pandas.read_csv(io.BytesIO(done.stdout))
    assert len(frame) == 4  # one point of each import, two of perfci's own record
    vllm = frame[frame["workload"] == "vllm-bench"].iloc[0]
    assert vllm["ttft_ms_p50"] == pytest.approx(json.loads((FOREIGN / "vllm-bench-serve.json").read_text())["median_ttft_ms"],
                                                rel=1e-4)  # fmt: skip


@pytest.mark.integration  # starts perfci as a process
def test_points_export_as_parquet_round_trips_through_pandas(store_dir):
    pytest.importorskip("pyarrow")
    done = perfci("export", "--table", "points", "--format", "parquet", "--out", "points.parquet", cwd=store_dir)
    assert done.returncode == EXIT_OK, done.stderr
    frame = pandas.read_parquet(store_dir / "points.parquet")
    stored = pandas.read_sql_query("SELECT * FROM points", open_db(store_dir / "perfci.db", readonly=True).conn)
    pandas.testing.assert_frame_equal(frame, stored)


@pytest.mark.integration  # starts perfci as a process
def test_parquet_without_pyarrow_is_a_clear_usage_error(store_dir):
    code = ("import sys; sys.modules['pyarrow'] = None; from perfci.cli.main import cli; "
            "cli(['export', '--format', 'parquet', '--out', 'x.parquet'])")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=store_dir, capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_USAGE
    assert "needs pyarrow" in done.stderr
    assert not (store_dir / "x.parquet").exists()


@pytest.mark.integration  # starts perfci as a process
def test_jsonl_export_of_a_view_unpacks_json_columns(store_dir):
    done = perfci("export", "--table", "request_itl", "--format", "jsonl", cwd=store_dir)
    assert done.returncode == EXIT_OK, done.stderr
    rows = [json.loads(line) for line in done.stdout.decode().splitlines()]
    bench = json.loads((FOREIGN / "vllm-bench-serve.json").read_text())
    gaps = sum(len(g) for g in bench["itls"])
    assert len(rows) >= gaps  # vLLM's gaps, and the perfci record's
    assert {"point_id", "run_id", "request_idx", "gap_idx", "itl_ms"} <= rows[0].keys()


def test_views_unpack_hardware_telemetry_and_provenance(store_dir, record_dict):
    db = open_db(store_dir / "perfci.db", readonly=True)
    hw = {r["run_id"]: r for r in db.query("SELECT * FROM run_hardware")}
    own = hw[record_dict["run_id"]]
    assert own["cpu"] == record_dict["hardware"]["fingerprint"].get("cpu")
    telemetry = list(db.query("SELECT * FROM point_telemetry WHERE run_id = ?", [record_dict["run_id"]]))
    assert {(t["point_id"][-1], t["name"], t["value"], t["min"], t["mean"], t["max"]) for t in telemetry} == {
        ("0", "cpu_load_mean", 0.5, None, None, None), ("1", "samples", 3, None, None, None),
        ("1", "gpu_util", None, 10, 20.5, 31)}  # fmt: skip
    imported = {r["tool"]: r for r in db.query("SELECT * FROM imported_runs")}
    assert imported.keys() == {"vllm bench serve", "guidellm"}
    assert imported["guidellm"]["tool_version"] == "0.8.1"
    latest = list(db.query("SELECT * FROM latest_runs"))
    assert len(latest) == 3  # three suites


@pytest.mark.integration  # starts perfci as a process
def test_unknown_table_names_what_there_is(store_dir):
    done = perfci("export", "--table", "nope", cwd=store_dir)
    assert done.returncode == EXIT_USAGE
    assert b"no table or view 'nope'" in done.stderr and b"points" in done.stderr
