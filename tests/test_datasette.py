"""Datasette serving a perfci store with `perfci datasette-metadata`: a real `datasette` process on 127.0.0.1,
read over HTTP as a browser or a script would."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from perfci.measure.server import free_port
from perfci.metrics import VOCABULARY
from perfci.report import browse
from perfci.store import imports, open_db

FOREIGN = Path(__file__).parent / "fixtures" / "foreign"
DATASETTE = shutil.which("datasette", path=str(Path(sys.executable).parent)) or shutil.which("datasette")


def test_every_metric_of_the_vocabulary_has_a_description_and_latencies_a_unit():
    meta = browse.metadata("perfci.db")["databases"]["perfci"]["tables"]["points"]
    assert set(VOCABULARY) <= meta["columns"].keys()
    assert meta["units"]["ttft_ms_p99"] == "ms" and meta["units"]["duration_s"] == "s"


@pytest.fixture
def served(tmp_path):
    if DATASETTE is None:
        pytest.skip("datasette is not installed (the dev extra installs it)")
    db = open_db(tmp_path / "perfci.db")
    assert not imports.ingest_files(db, [FOREIGN / "vllm-bench-serve.json", FOREIGN / "guidellm.json"]).refused
    db.close()
    done = subprocess.run([sys.executable, "-m", "perfci", "datasette-metadata", "--db", "perfci.db"], cwd=tmp_path,
                          capture_output=True, text=True, check=True, env=os.environ.copy())  # fmt: skip
    (tmp_path / "metadata.json").write_text(done.stdout)
    port = free_port()
    proc = subprocess.Popen([DATASETTE, "serve", "perfci.db", "-m", "metadata.json", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/-/versions.json", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"datasette exited: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def get(url: str) -> dict | list:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.integration  # starts perfci as a process
def test_datasette_serves_the_views_with_perfci_s_metadata(served):
    tools = get(f"{served}/perfci/imported_runs.json?_shape=array")
    assert sorted(t["tool"] for t in tools) == ["guidellm", "vllm bench serve"]
    gaps = get(f"{served}/perfci/request_itl.json?_shape=array&_size=5")
    assert len(gaps) == 5 and isinstance(gaps[0]["itl_ms"], float)
    meta = get(f"{served}/-/metadata.json")
    assert meta["databases"]["perfci"]["tables"]["points"]["units"]["ttft_ms_p50"] == "ms"
    with urllib.request.urlopen(f"{served}/perfci/points", timeout=30) as r:
        page = r.read().decode()
    assert "One row per measured load level" in page  # the table's description, shown on its page
    assert "ms" in page
    facets = get(f"{served}/perfci/points.json?_facet=workload")
    assert {f["value"] for f in facets["facet_results"]["workload"]["results"]} == {"vllm-bench", "guidellm"}
