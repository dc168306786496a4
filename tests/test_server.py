"""EngineProcess: readiness, failing fast, timeouts and a teardown that leaves nothing behind."""

import socket
import sys
from pathlib import Path

import psutil
import pytest

from perfci.errors import EngineError
from perfci.measure.server import EngineProcess, free_port, port_in_use

FAKE = str(Path(__file__).with_name("fake_engine.py"))


def engine(mode: str, tmp_path: Path) -> EngineProcess:
    port = free_port()
    return EngineProcess([sys.executable, FAKE, mode, str(port)], port=port, log_path=tmp_path / "engine.log")


def group_alive(pgid: int) -> list[int]:
    import os

    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (psutil.Error, ProcessLookupError):
            pass
    return out


def test_ready_then_clean_teardown_of_the_whole_group(tmp_path):
    e = engine("ok", tmp_path)
    e.start()
    ready = e.wait_ready(timeout_s=30)
    assert 0.2 < ready < 30
    assert len(group_alive(e.pid)) == 2  # the server and its forked child
    assert [line for _, line in e.lines][-1] == "Application startup complete."
    stamps = [at for at, _ in e.lines]
    assert stamps == sorted(stamps) and stamps[1] >= 0.2  # stamped on receipt, relative to spawn
    pgid = e.pid
    e.stop()
    assert group_alive(pgid) == []
    assert not port_in_use(e.port)
    assert "load_weights took" in (tmp_path / "engine.log").read_text()


def test_exit_during_startup_fails_fast_with_log_tail(tmp_path):
    e = engine("exit", tmp_path)
    e.start()
    with pytest.raises(EngineError, match="exited with code 3") as err:
        e.wait_ready(timeout_s=60)
    assert "fatal: out of memory" in str(err.value)
    pgid = e.pid
    e.stop()  # the orphaned child of the dead leader is still in the group: teardown reaches it
    assert group_alive(pgid) == []


def test_never_ready_times_out_and_kills_the_group(tmp_path):
    e = engine("hang", tmp_path)
    e.start()
    with pytest.raises(EngineError, match="not ready after 1.5 s") as err:
        e.wait_ready(timeout_s=1.5)
    assert "load_weights took" in err.value.log_tail
    assert group_alive(e.pid) == []


def test_sigterm_ignored_means_sigkill_after_grace(tmp_path):
    e = engine("stubborn", tmp_path)
    e.start()
    e.wait_ready(timeout_s=30)
    pgid = e.pid
    e.stop(grace_s=0.5)
    assert group_alive(pgid) == []


def test_port_already_taken(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        e = EngineProcess([sys.executable, FAKE, "ok", str(port)], port=port, log_path=tmp_path / "l.log")
        with pytest.raises(EngineError, match=f"port {port} .* already in use"):
            e.start()


def test_missing_executable(tmp_path):
    e = EngineProcess(["/no/such/python"], port=free_port(), log_path=tmp_path / "l.log")
    with pytest.raises(EngineError, match="cannot start engine"):
        e.start()


def test_stopped_engine_disarms_its_watchdog(tmp_path):
    e = engine("ok", tmp_path)
    e.start()
    e.wait_ready(timeout_s=30)
    dog = e._watchdog
    assert dog is not None and dog.poll() is None  # armed while the engine runs
    e.stop()
    assert dog.poll() == 0 and e._watchdog is None


def test_a_terminated_watchdog_stops_its_engine_first(tmp_path):
    """`pkill -f perfci` reaches the watchdog as well as perfci: the engine must not outlive them both."""
    import signal

    e = engine("ok", tmp_path)
    e.start()
    e.wait_ready(timeout_s=30)
    dog = e._watchdog
    dog.send_signal(signal.SIGTERM)
    assert dog.wait(timeout=15) == 128 + signal.SIGTERM
    assert group_alive(e.pid) == []


def test_missing_executable_leaves_no_watchdog(tmp_path):
    before = {p.pid for p in psutil.Process().children()}
    e = EngineProcess(["/no/such/python"], port=free_port(), log_path=tmp_path / "l.log")
    with pytest.raises(EngineError):
        e.start()
    assert {p.pid for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE} <= before


PARENT = """
import sys, time
from pathlib import Path
from perfci.measure.server import EngineProcess
e = EngineProcess([sys.executable, sys.argv[1], "stubborn", sys.argv[2]], port=int(sys.argv[2]),
                  log_path=Path(sys.argv[3]))
e.start()
e.wait_ready(timeout_s=60)
print(e.pid, flush=True)
time.sleep(3600)
"""


def test_engine_group_dies_with_its_parent_killed_by_sigkill(tmp_path):
    """The parent (perfci) gets SIGKILL and cannot clean up: the watchdog stops the engine and the child it
    forked (a grandchild of the parent, as vLLM's engine core is), even an engine that ignores SIGTERM."""
    import os
    import subprocess
    import time

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, FAKE, str(port), str(tmp_path / "e.log")],
                              stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    pgid = int(parent.stdout.readline())
    assert len(group_alive(pgid)) == 2
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 15  # SIGTERM (ignored), SIGKILL 5 s later
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_alive(pgid) == []
    assert not port_in_use(port)


def test_exited_tells_a_dying_engine_from_a_live_one(tmp_path):
    """Requests that fail to connect are classified by whether the engine exits within a grace period,
    not by a single look at a process whose exit the kernel may not have finished."""
    import os
    import signal
    import threading

    e = engine("ok", tmp_path)
    e.start()
    e.wait_ready(timeout_s=30)
    assert not e.exited(within_s=0.3)
    threading.Timer(0.5, lambda: os.kill(e.pid, signal.SIGKILL)).start()
    assert e.exited(within_s=10)
    e.stop()
