"""Launch and supervise one engine process: its own process group, a log stamped line by line on receipt,
readiness, and a teardown that verifies the port is free and no child survived.

An engine never outlives perfci: each one has a watchdog (perfci/measure/watchdog.py) that stops its whole process
group when perfci exits without stopping it, even by `kill -9`; and `stopping_leftovers()` stops, on the way
out of a run, every engine started inside it that is still tracked, whatever cut the run short."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import psutil

from perfci.errors import EngineError
from perfci.interrupt import shielded

WATCHDOG = Path(__file__).with_name("watchdog.py")
# Engines started and not yet stopped, tracked from the moment their process exists.
_live: set[EngineProcess] = set()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class EngineProcess:
    """One engine server. Every log line is stamped with seconds since spawn as it arrives, which is how
    startup phases that no line reports (imports, process spawning) become measurable."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.argv = list(argv)
        self.port = port
        self.host = host
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.clock = clock
        self.lines: list[tuple[float, str]] = []
        self._tail: deque[str] = deque(maxlen=200)
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        if port_in_use(self.port, self.host):
            raise EngineError(f"port {self.port} on {self.host} is already in use; pick another with --port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # A signal between the spawn and the tracking would orphan the engine: it waits until both are done.
        with shielded():
            self._watchdog = _arm_watchdog()  # before the spawn, and outside the timed startup
            self.spawned_at = self.clock()
            try:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,  # own process group: teardown reaches every child it spawns
                )
            except OSError as e:
                self._disarm_watchdog()
                raise EngineError(f"cannot start engine {self.argv[0]!r}: {e.strerror}") from e
            _live.add(self)
            _tell_watchdog(self._watchdog, f"{self._proc.pid}\n")  # its group id (start_new_session)
        self._reader = threading.Thread(target=self._read, name=f"engine-log-{self._proc.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc and self._proc.stdout
        with open(self.log_path, "w", encoding="utf-8", errors="replace") as log:
            for raw in self._proc.stdout:
                at = self.clock() - self.spawned_at
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                self.lines.append((at, line))
                self._tail.append(line)
                log.write(f"{line}\n")
                log.flush()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def exited(self, *, within_s: float) -> bool:
        """Whether the process has exited or does so within `within_s`. Its sockets close a moment before
        its exit can be seen: when requests fail to connect, this tells a dying engine from a live one."""
        if self._proc is None:
            return False
        try:
            self._proc.wait(timeout=within_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(list(self._tail)[-n:])

    def wait_ready(self, *, path: str = "/health", timeout_s: float, poll_s: float = 0.2) -> float:
        """Seconds from spawn to the first 200 on `path`. Fails fast with the log tail if the process exits;
        on timeout kills the whole process group."""
        deadline = self.spawned_at + timeout_s
        url = f"{self.base_url}{path}"
        while True:
            if not self.alive():
                self._join_reader()
                code = self._proc.returncode if self._proc else None
                raise EngineError(f"engine exited with code {code} before it was ready", log_tail=self.log_tail())
            if _http_ok(url):
                return self.clock() - self.spawned_at
            if self.clock() > deadline:
                tail = self.log_tail()
                self.stop()
                raise EngineError(f"engine not ready after {timeout_s:g} s (polling {url})", log_tail=tail)
            time.sleep(poll_s)

    def stop(self, *, grace_s: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL after `grace_s`, then verify nothing of it survives."""
        if self._proc is None:
            return
        pgid = self._proc.pid  # start_new_session made the leader's pid the group id
        group = _group_members(pgid)
        _signal_group(pgid, signal.SIGTERM)
        try:
            self._proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        alive = _wait_gone(group, timeout_s=max(0.5, grace_s / 3))
        if alive or self._proc.poll() is None:
            _signal_group(pgid, signal.SIGKILL)
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            self._proc.wait(timeout=10)
            _wait_gone(alive, timeout_s=5)
        self._join_reader()
        survivors = [p.pid for p in _group_members(pgid)]
        if survivors:  # the watchdog stays armed: it tries again when perfci exits
            raise EngineError(f"engine processes survived teardown: {survivors}")
        self._disarm_watchdog(stopped=True)
        _live.discard(self)
        if not _wait_port_free(self.port, self.host, timeout_s=10):
            raise EngineError(f"port {self.port} still in use after the engine stopped")

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)

    def _disarm_watchdog(self, *, stopped: bool = False) -> None:
        if self._watchdog is None:
            return
        _tell_watchdog(self._watchdog, "done\n" if stopped else "")
        with contextlib.suppress(OSError):
            self._watchdog.stdin.close()  # type: ignore[union-attr]
        try:
            self._watchdog.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._watchdog.kill()
            self._watchdog.wait()
        self._watchdog = None


@contextlib.contextmanager
def stopping_leftovers() -> Iterator[None]:
    """On the way out, stop every engine started inside the block and not stopped by it: the one whose start
    a signal interrupted before anything else held it included."""
    before = set(_live)
    try:
        yield
    finally:
        for engine in _live - before:
            # Best effort on the way out: a teardown problem here is already reported by the stop that
            # the run itself attempted, and must not hide why the run ended.
            with contextlib.suppress(EngineError):
                engine.stop()


def _arm_watchdog() -> subprocess.Popen[bytes]:
    """A watchdog waiting for its engine's group id (perfci/measure/watchdog.py), in a session of its own."""
    try:
        dog = subprocess.Popen([sys.executable, "-I", "-S", str(WATCHDOG)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    except OSError as e:
        raise EngineError(f"cannot start the engine watchdog: {e.strerror}") from e
    assert dog.stdout is not None
    armed = dog.stdout.readline()
    dog.stdout.close()
    if armed != b"armed\n":
        dog.kill()
        dog.wait()
        raise EngineError(f"the engine watchdog did not start (exit code {dog.wait()})")
    return dog


def _tell_watchdog(dog: subprocess.Popen[bytes], message: str) -> None:
    assert dog.stdin is not None
    with contextlib.suppress(OSError):  # a dead watchdog cannot help; the run's own teardown still does
        dog.stdin.write(message.encode())
        dog.stdin.flush()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                members.append(p)
    return members


def _wait_gone(procs: list[psutil.Process], *, timeout_s: float) -> list[psutil.Process]:
    """Processes still running after `timeout_s`. A zombie counts as gone: orphans are reaped by whatever
    init the machine has, sometimes never inside a container."""

    def running(p: psutil.Process) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    deadline = time.monotonic() + timeout_s
    alive = [p for p in procs if running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if running(p)]
    return alive


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_port_free(port: int, host: str, *, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while port_in_use(port, host):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
