"""benchmarks/hot_paths.py runs: each benchmark once, unmeasured (`--benchmark-disable`), so its inputs and
assertions stay in step with the code it times. The timings themselves are `make bench-hot`'s."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration  # runs pytest as a process
def test_every_hot_path_benchmark_runs_once(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "hot_paths.py"), "-q",
                           "--benchmark-disable", "-p", "no:cacheprovider", "--rootdir", str(ROOT)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=280, env=os.environ.copy())  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "7 passed" in done.stdout
