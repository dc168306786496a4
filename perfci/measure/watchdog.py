"""Stops an engine's process group when perfci dies, however it dies (`kill -9` included), and when the watchdog
itself is told to terminate.

EngineProcess starts one watchdog per engine, before the engine, in a session of its own (terminal signals
and job-control kills of perfci's group do not reach it). Its stdin is a pipe whose only write end perfci
holds; the kernel closes that end when perfci exits for any reason. perfci writes the engine's process group
id once the engine is spawned, and `done` once it has stopped the engine itself. End of input without `done`
means perfci is gone: the group gets SIGTERM, then SIGKILL after a grace period. The group holds the whole
tree (vLLM's API server, engine core and workers), which a parent-death signal, reaching only the direct
child, would not.

Run as `python -I -S watchdog.py`: the standard library only, nothing of perfci imported, so it is armed in
milliseconds.
"""

import os
import signal
import time

GRACE_S = 5.0


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + GRACE_S
        while group_exists(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)


def main() -> None:
    received = bytearray()

    def stop_if_armed() -> None:
        words = received.split()
        if words and words[-1] != b"done":
            stop_group(int(words[0]))

    def on_signal(signum: int, _frame: object) -> None:
        # A terminating signal meant for perfci often reaches its watchdog too (`pkill -f perfci`, a runner's
        # cleanup of the job's processes): stop the engine before dying, or it would outlive both.
        stop_if_armed()
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    os.write(1, b"armed\n")
    os.close(1)
    while chunk := os.read(0, 64):
        received += chunk
    stop_if_armed()


if __name__ == "__main__":
    main()
