"""Helpers for tests that run `python -m perfci run` as a real subprocess and then stop it: every process
it starts carries a marker in its environment, so what survives it can be found by scanning /proc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

MARKER = "PERFCI_TEST_RUN"


def start_perfci(args: list[str], cwd: Path, *, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """`python -m perfci ARGS` in its own session (a terminal's Ctrl-C reaches one process group; tests send their signals
    themselves), with its temp dirs under cwd/tmp and a fresh marker; `env` is added to (or overrides) the environment."""
    marker = uuid.uuid4().hex
    (cwd / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, MARKER: marker, "TMPDIR": str(cwd / "tmp"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **(env or {})}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "perfci", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    return proc, marker


def marked(marker: str, *, exclude: int | None = None) -> list[tuple[int, str]]:
    """(pid, cmdline) of every live process whose environment carries `marker` (zombies have none)."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((int(entry.name), cmd))
        except OSError:
            continue
    return found


def engine_processes(marker: str, perfci_pid: int, what: str) -> list[tuple[int, str]]:
    return [(pid, cmd) for pid, cmd in marked(marker, exclude=perfci_pid) if what in cmd]


def wait_for(predicate, *, timeout_s: float, what: str, poll_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def left_over(marker: str, *, timeout_s: float) -> list[tuple[int, str]]:
    """Marked processes still alive after up to `timeout_s` (an engine's stop takes a moment)."""
    deadline = time.monotonic() + timeout_s
    while (alive := marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def records_in(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))] if out.exists() else []


def temp_dirs(cwd: Path) -> list[str]:
    return sorted(p.name for p in (cwd / "tmp").glob("perfci-run-*"))
