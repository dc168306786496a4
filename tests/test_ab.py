"""`perfci ab` end to end on sim builds: real engine starts, real HTTP, a real SQLite store; ABBA order,
storage, report rendering and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from perfci import store
from perfci.errors import EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, ConfigError
from perfci.store import sessions
from perfci.verdicts import ab

SUITE = """\
name = "ab-test"
description = "one small closed-loop point"

[[models]]
name = "tiny-llama"
source = "perfci:tiny-llama"

[[workloads]]
name = "short"
prompt_tokens = 16
output_tokens = 8
load = { concurrency = [2] }

[run]
requests = 8
warmup_requests = 1

[startup]
caches = ["warm"]
"""


def perfci(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfci", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ab")
    (d / "suite.toml").write_text(SUITE)
    (d / "a.toml").write_text("startup_s = 0.05\ndecode_ms_per_token = 10\n")
    (d / "slow.toml").write_text("startup_s = 0.05\ndecode_ms_per_token = 20\n")  # every decode step twice as long
    (d / "fast.toml").write_text("startup_s = 0.05\ndecode_ms_per_token = 5\n")
    return d


def ab_session(work: Path, candidate: str, db: str) -> subprocess.CompletedProcess:
    return perfci("ab", "--baseline", "sim:a.toml", "--candidate", f"sim:{candidate}", "--suite", "suite.toml",
                  "--blocks", "4", "--db", db, "--out", "runs", "--json", cwd=work)  # fmt: skip


@pytest.fixture(scope="module")
def slower(work):
    return ab_session(work, "slow.toml", "slow.db")


def test_a_slower_decode_step_fails_and_exits_1(slower):
    assert slower.returncode == EXIT_REGRESSION, slower.stderr
    session = json.loads(slower.stdout)
    assert session["verdict"] == "FAIL"
    failed = {s["metric"] for s in session["series"] if s["verdict"] == "FAIL"}
    assert {"tpot_ms_p50", "output_throughput"} <= failed
    tpot = next(s for s in session["series"] if s["metric"] == "tpot_ms_p50")
    assert tpot["low"] > 0.5 and tpot["mde"] > 0  # twice as slow: the whole interval is far above +50%


def test_blocks_run_in_abba_order_each_a_stored_run_of_its_build(work, slower):
    db = store.open_db(work / "slow.db", readonly=True)
    blocks = sessions.blocks_frame(db, 1)
    assert list(blocks["arm"]) == ["A", "B", "B", "A"]
    runs = {r["run_id"]: r for r in db.execute_returning_dicts("SELECT run_id, version FROM runs")}
    assert set(blocks["run_id"]) == set(runs)
    versions = [runs[r]["version"] for r in blocks["run_id"]]
    assert versions[0] == versions[3] != versions[1] == versions[2]
    assert all(v.startswith("sim-") for v in versions)  # a sim build's version is its model's hash
    stored = ab.load_session(db, 1)
    assert stored.verdict == "FAIL" and len(stored.judgement.series) == len(json.loads(slower.stdout)["series"])


def test_report_renders_the_stored_session(work, slower):
    done = perfci("report", "--ab", "latest", "--db", "slow.db", cwd=work)
    assert done.returncode == EXIT_OK, done.stderr
    assert "## perfci A/B: sim==sim-" in done.stdout and "**🔴 FAIL**" in done.stdout
    assert "| tiny-llama · short · c=2 · tpot\\_ms\\_p50 |" in done.stdout


def test_a_faster_candidate_is_improved_and_exits_0(work):
    done = ab_session(work, "fast.toml", "fast.db")
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["verdict"] == "IMPROVED"


def test_too_few_blocks_and_a_bad_model_file_exit_2_naming_what(work):
    done = perfci("ab", "--baseline", "sim:a.toml", "--candidate", "sim:a.toml", "--suite", "suite.toml",
                  "--blocks", "3", "--db", "x.db", cwd=work)  # fmt: skip
    assert done.returncode == EXIT_USAGE and "--blocks 3: need at least 4" in done.stderr
    (work / "typo.toml").write_text("decode_ms_per_tokn = 3\n")
    done = perfci("ab", "--baseline", "sim:a.toml", "--candidate", "sim:typo.toml", "--suite", "suite.toml",
                  "--db", "x.db", cwd=work)  # fmt: skip
    assert done.returncode == EXIT_USAGE
    assert "typo.toml" in done.stderr and "decode_ms_per_tokn" in done.stderr
    assert not (work / "x.db").exists()  # refused before anything was measured or stored


def test_dashboard_lists_the_session_with_its_series_and_block_links(work, slower):
    done = perfci("dashboard", "--db", "slow.db", "--out", "site", cwd=work)
    assert done.returncode == EXIT_OK, done.stderr
    page = (work / "site" / "ab.html").read_text()
    session = json.loads(slower.stdout)
    assert f"Session 1: {session['candidate_build']} vs {session['baseline_build']}" in page
    assert page.count('class="verdict-fail">FAIL</td>') == sum(s["verdict"] == "FAIL" for s in session["series"])
    for block in session["blocks"]:
        assert f'href="runs/{block["run_id"]}.html">{block["arm"]}</a>' in page
        assert (work / "site" / "runs" / f"{block['run_id']}.html").is_file()


def test_a_changed_machine_identity_makes_the_session_inconclusive_naming_what_changed(make_record_dict):
    from perfci.store.records import RunRecord

    def block(driver: str, scale: float) -> RunRecord:
        data = make_record_dict()
        data["hardware"]["fingerprint"]["driver"] = driver
        for key in ("ttft_ms", "itl_ms"):
            data["points"][0]["metrics"][key] = {k: v * scale for k, v in data["points"][0]["metrics"][key].items()}
        return RunRecord.model_validate(data)

    plan = [("A", 1.0), ("B", 2.0), ("B", 2.02), ("A", 1.01)]  # the candidate twice as slow
    drivers = ["550.54", "550.54", "555.42", "555.42"]
    blocks = [(i, arm, block(drivers[i], scale)) for i, (arm, scale) in enumerate(plan)]
    session = ab.judge_blocks(blocks, session_id=1, baseline="x==1", candidate="x==2", suite="s")
    assert session.verdict == "INCONCLUSIVE"
    assert session.reason == "machine unstable: driver: 550.54 → 555.42 (block 3)"
    assert {s.verdict for s in session.judgement.series} == {"INCONCLUSIVE"}
    same = [(i, arm, block("550.54", scale)) for i, (arm, scale) in enumerate(plan)]
    assert ab.judge_blocks(same, session_id=1, baseline="x==1", candidate="x==2", suite="s").verdict == "FAIL"


def test_a_session_stopped_by_a_signal_keeps_its_blocks_and_is_marked_interrupted(work, tmp_path):
    import signal

    from perfci import config
    from perfci.errors import Interrupted

    class StopAfterSecondBlock:
        def block_started(self, block, blocks, arm, build) -> None: ...

        def block_finished(self, block, record) -> None:
            if block == 1:
                raise Interrupted(signal.SIGTERM)

    db = store.open_db(tmp_path / "stopped.db")
    with pytest.raises(Interrupted):
        ab.run_ab(baseline=f"sim:{work / 'a.toml'}", candidate=f"sim:{work / 'slow.toml'}",
                  suite=config.load_suite(str(work / "suite.toml")), blocks=4, db=db, out=tmp_path / "runs",
                  reporter=StopAfterSecondBlock())  # fmt: skip
    assert list(sessions.sessions_frame(db)["status"]) == ["interrupted"]
    assert list(sessions.blocks_frame(db, 1)["arm"]) == ["A", "B"]
    with pytest.raises(ConfigError, match="session 1 is interrupted"):
        ab.load_session(db, 1)


def test_ab_and_confirm_default_to_the_sessions_number_of_blocks():
    from perfci.cli import cli

    for command in ("ab", "confirm"):
        (blocks,) = [p for p in cli.commands[command].params if p.name == "blocks"]
        assert blocks.default == ab.DEFAULT_BLOCKS, command
