"""SIGINT and SIGTERM as one exception (errors.Interrupted), so that a stopped run unwinds through the same
`finally` blocks as a failing one: engines stopped, temp dirs removed, the record written and stored.

The first signal raises; later ones are reported and otherwise ignored, so that a second Ctrl-C or a CI
timeout's repeated SIGTERM cannot cut the cleanup the first one started (engines outlive a killed perfci
only until its watchdog stops them: see server.py). Inside `shielded()` a signal is held until the block
ends, for the few steps that must not be cut in half (a process spawned but not yet tracked).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from perfci.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    depth = 0  # nested interruptible() scopes (a bisect's trials inside its command)
    raised: int | None = None  # the signal already raised as Interrupted
    held: int | None = None  # a signal that arrived inside shielded(), raised when it ends
    shields = 0


def _handle(signum: int, frame: object) -> None:
    if _State.raised is not None:
        name = signal.Signals(signum).name
        sys.stderr.write(f"perfci: {name} again: still stopping (stopping the engine, writing the record)\n")
        return
    if _State.shields:
        _State.held = _State.held or signum
        return
    _State.raised = signum
    raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM raise Interrupted (once). Only the main thread can install handlers;
    elsewhere this changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handle) for s in SIGNALS} if _State.depth == 0 else {}
    _State.depth += 1
    try:
        yield
    finally:
        _State.depth -= 1
        if _State.depth == 0:
            for s, handler in previous.items():
                signal.signal(s, handler)
            _State.raised = _State.held = None


@contextmanager
def shielded() -> Iterator[None]:
    """A signal arriving inside is held and raised when the block ends (never in its middle)."""
    _State.shields += 1
    try:
        yield
    finally:
        _State.shields -= 1
        if not _State.shields and _State.held is not None and _State.raised is None:
            _State.raised, _State.held = _State.held, None
            raise Interrupted(_State.raised)
