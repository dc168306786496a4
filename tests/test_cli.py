"""The CLI as a user drives it: each command's promises (exit codes, output, files), as tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfci import __version__
from perfci.cli.main import cli
from perfci.errors import EXIT_RUN_NOT_OK
from perfci.store import open_db, row_counts

FAST = ["--sim", "startup_s=0.1", "--sim", "decode_ms_per_token=1"]


def perfci(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfci", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=None if env is None else {**os.environ, **env})  # fmt: skip


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """`perfci run --suite smoke --engine sim --db x.db --out r.json`, as a real process."""
    d = tmp_path_factory.mktemp("smoke")
    done = perfci("run", "--suite", "smoke", "--engine", "sim", *FAST, "--db", "x.db", "--out", "r.json", cwd=d,
                  env={"PERFCI_CACHE": str(d / "cache")})  # a new machine: no compile cache yet  # fmt: skip
    assert done.returncode == 0, done.stderr
    return d, done


def test_run_prints_tables_and_stores_everything(smoke_run):
    d, done = smoke_run
    assert "SIMULATOR" in done.stdout and "TTFT p50" in done.stdout and "startup" in done.stdout
    counts = row_counts(open_db(d / "x.db"))
    assert counts["runs"] == 1 and counts["points"] == 4 and counts["requests"] == 48
    # The smoke suite asks for a warm start: on a new machine it primes the caches first, and says so.
    assert counts["startups"] == 2 and counts["startup_phases"] > 3
    assert "tiny-llama (priming)" in done.stdout and "tiny-llama (warm)" in done.stdout


def test_ingest_twice_gives_identical_row_counts(smoke_run):
    d, _ = smoke_run
    first = perfci("ingest", "r.json", "--db", "y.db", cwd=d)
    after_first = row_counts(open_db(d / "y.db"))
    second = perfci("ingest", "r.json", "--db", "y.db", "--json", cwd=d)
    assert first.returncode == second.returncode == 0
    assert row_counts(open_db(d / "y.db")) == after_first == row_counts(open_db(d / "x.db"))
    assert json.loads(second.stdout)["already_present"]


def test_misspelled_suite_key_exits_2_naming_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text((Path(__file__).parents[1] / "suites/smoke.toml").read_text().replace("output_tokens", "output_tokenz", 1))
    done = perfci("run", "--suite", str(bad), "--engine", "sim", cwd=tmp_path)
    assert done.returncode == 2
    assert str(bad) in done.stderr and "workloads[0].output_tokenz: unknown key" in done.stderr
    assert not (tmp_path / "perfci.db").exists()  # nothing written


def test_ingest_refuses_corrupt_and_foreign_files_writing_nothing(smoke_run, tmp_path):
    d, _ = smoke_run
    good = d / "r.json"
    truncated = tmp_path / "truncated.json"
    truncated.write_text(good.read_text()[:500])
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"hello": "world"}')
    result = CliRunner().invoke(cli, ["ingest", str(truncated), str(foreign), "--db", str(tmp_path / "z.db")])
    assert result.exit_code == 2
    assert "truncated.json" in result.output and "foreign.json" in result.output
    assert row_counts(open_db(tmp_path / "z.db"))["runs"] == 0


def test_show_and_rebuild(smoke_run, tmp_path):
    d, _ = smoke_run
    shown = CliRunner().invoke(cli, ["show", "--db", str(d / "x.db"), "--json"])
    assert shown.exit_code == 0
    (run,) = json.loads(shown.output)
    assert run["engine"] == "sim" and run["suite"] == "smoke"
    records = tmp_path / "records"
    records.mkdir()
    (records / "r.json").write_text((d / "r.json").read_text())
    rebuilt = CliRunner().invoke(cli, ["db", "rebuild", str(records), "--db", str(tmp_path / "re.db")])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert row_counts(open_db(tmp_path / "re.db")) == row_counts(open_db(d / "x.db"))


def test_run_json_output_with_every_request_failing(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--suite", "smoke", "--engine", "sim", *FAST, "--sim", "error_rate=1",
                                      "--db", str(tmp_path / "f.db"), "--out", str(tmp_path), "--json"])  # fmt: skip
    record = json.loads(result.stdout)
    assert record["status"] == "failed" and all(p["status"] == "failed" for p in record["points"])
    assert result.exit_code == EXIT_RUN_NOT_OK  # the record is stored all the same
    assert row_counts(open_db(tmp_path / "f.db"))["runs"] == 1


def test_a_degraded_run_exits_5(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--suite", "smoke", "--engine", "sim", *FAST, "--sim", "drop_rate=0.2",
                                      "--db", str(tmp_path / "f.db"), "--out", str(tmp_path), "--json"])  # fmt: skip
    record = json.loads(result.stdout)
    assert record["status"] == "degraded" and result.exit_code == EXIT_RUN_NOT_OK
    assert {p["status"] for p in record["points"]} <= {"ok", "degraded"}
    assert "degraded" in {p["status"] for p in record["points"]}


def test_bad_arguments(tmp_path):
    r = CliRunner().invoke(cli, ["run", "--suite", "smoke", "--engine", "nope==1"])
    assert r.exit_code == 2 and "unknown engine 'nope'" in r.output
    r = CliRunner().invoke(cli, ["run", "--suite", "smoke", "--engine", "sim", "--sim", "bogus=1"])
    assert r.exit_code == 2 and "bogus: unknown key" in r.output


def test_doctor(tmp_path):
    r = CliRunner().invoke(cli, ["doctor", "--json"])
    assert r.exit_code == 0
    assert json.loads(r.output)["fingerprint"]["label"].startswith(("cpu-", "h", "b"))


def test_env_list_and_prune(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFCI_CACHE", str(tmp_path))
    half_made = tmp_path / "envs" / "vllm-0.1.0-0123456789"
    half_made.mkdir(parents=True)  # no completion marker: an install that was killed
    listed = CliRunner().invoke(cli, ["env", "list", "--json"])
    assert listed.exit_code == 0
    (info,) = json.loads(listed.output)
    assert info["complete"] is False
    assert CliRunner().invoke(cli, ["env", "prune"]).exit_code == 2  # refuses to guess what to remove
    pruned = CliRunner().invoke(cli, ["env", "prune", "--incomplete"])
    assert pruned.exit_code == 0 and not half_made.exists()


# --- compare, detect, regressions, ack on real sim runs ------------------------------------------------------

DETECT_SUITE = """
name = "detect-e2e"
[[models]]
name = "m"
[[workloads]]
name = "w"
prompt_tokens = 16
output_tokens = 8
load = { concurrency = [2] }
[run]
requests = 6
warmup_requests = 1
repeats = 6
[startup]
caches = ["warm"]
[sim]
startup_s = 0.1
"""


@pytest.fixture(scope="module")
def fast_and_slow_sim(tmp_path_factory):
    """Two `perfci run --engine sim` runs of one suite, the second with ten times the decode time per token."""
    d = tmp_path_factory.mktemp("detect")
    (d / "t.toml").write_text(DETECT_SUITE)
    run_ids = []
    for decode_ms in (2, 20):  # ten times slower: a difference no load on the machine can hide
        done = perfci("run", "--suite", "t.toml", "--engine", "sim", "--sim", f"decode_ms_per_token={decode_ms}",
                      "--db", "x.db", "--out", "runs", "--json", cwd=d)  # fmt: skip
        assert done.returncode == 0, done.stderr
        run_ids.append(json.loads(done.stdout)["run_id"])
    return d, run_ids


def test_detect_compare_regressions_and_ack_on_sim_runs(fast_and_slow_sim):
    d, (fast, slow) = fast_and_slow_sim
    db = ["--db", str(d / "x.db")]
    # Both runs are the build sim==<perfci's version>: there is no previous release to judge them against.
    first = perfci("detect", *db, cwd=d)
    assert first.returncode == 0, first.stderr
    assert "no-baseline" in first.stdout

    gated = perfci("detect", "--all", "--baseline", fast[:8], *db, "--json", cwd=d)
    assert gated.returncode == 1, gated.stderr
    report = json.loads(gated.stdout)
    verdicts = {j["run_id"]: j["verdict"] for j in report["judged"]}
    assert verdicts == {fast: "no-baseline", slow: "regression"}
    (finding,) = report["findings"]
    assert report["failing"] == [finding["id"]] and finding["status"] == "open"
    moved = {m["metric"] for m in finding["members"]}
    assert {"tpot_ms_p50", "itl_ms_mean", "e2e_ms_mean", "output_throughput"} <= moved  # ITL p50: 0 when chunks coalesce

    compared = CliRunner().invoke(cli, ["compare", fast, slow, *db, "--metric", "tpot_ms_*", "--json"])
    assert compared.exit_code == 0, compared.output
    tpot = json.loads(compared.output)["verdicts"]
    assert {v["metric"] for v in tpot} == {f"tpot_ms_{s}" for s in ("mean", "p50", "p90", "p95", "p99")}
    assert all(v["verdict"] == "regression" and v["rel_change"] > 0.5 and v["n_candidate"] == 6 for v in tpot)
    table = CliRunner().invoke(cli, ["compare", fast, slow, *db])
    assert table.exit_code == 0 and "regression" in table.output and "tpot_ms_p99" in table.output

    # Both runs are one build: against that build, the slow run is compared with the fast one only.
    own_build = json.loads(CliRunner().invoke(cli, ["compare", f"sim=={__version__}", slow, *db, "--json"]).output)
    assert own_build["baseline"]["run_ids"] == [fast] and own_build["candidate"]["run_ids"] == [slow]
    assert {(v["n_baseline"], v["n_candidate"]) for v in own_build["verdicts"] if v["metric"] == "tpot_ms_p50"} == {(6, 6)}

    listed = CliRunner().invoke(cli, ["regressions", "--status", "open", *db, "--json"])
    assert [f["id"] for f in json.loads(listed.output)] == [finding["id"]]
    acked = CliRunner().invoke(cli, ["ack", str(finding["id"]), "--why", "slower sim on purpose", *db])
    assert acked.exit_code == 0, acked.output
    assert "acknowledged" in acked.output
    assert CliRunner().invoke(cli, ["regressions", "--status", "open", *db, "--json"]).output.strip() == "[]"
    (shown,) = json.loads(CliRunner().invoke(cli, ["regressions", *db, "--json"]).output)
    assert (shown["status"], shown["why"]) == ("acknowledged", "slower sim on purpose")
    assert "acknowledged" in CliRunner().invoke(cli, ["regressions", *db]).output
    assert perfci("detect", *db, cwd=d).returncode == 0  # nothing open: the gate passes


def test_compare_and_ack_refuse_bad_input_naming_it(fast_and_slow_sim):
    d, (fast, slow) = fast_and_slow_sim
    db = ["--db", str(d / "x.db")]
    r = CliRunner().invoke(cli, ["compare", fast, "vllm==9.9", *db])
    assert r.exit_code == 2 and "no stored run matches 'vllm==9.9'" in r.output
    r = CliRunner().invoke(cli, ["compare", fast, slow, "--metric", "nope_*", *db])
    assert r.exit_code == 2 and "no metric matches nope_*" in r.output
    r = CliRunner().invoke(cli, ["compare", fast, fast, *db])
    assert r.exit_code == 2 and "holds no run but the candidate's own" in r.output
    r = CliRunner().invoke(cli, ["ack", "999", "--why", "x", *db])
    assert r.exit_code == 2 and "no regression with id 999" in r.output
    r = CliRunner().invoke(cli, ["ack", "1", *db])
    assert r.exit_code == 2 and "--why" in r.output
