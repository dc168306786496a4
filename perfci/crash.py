"""Internal errors (bugs in perfci): one line for the user, the whole traceback in a file for the bug report.

A crash must not look like an outcome (exit 1 would read as "a regression was found"), and a traceback in
a CI log is easy to lose: the CLI exits EXIT_INTERNAL and names the file that holds it.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from perfci import __version__
from perfci.measure import envs

MESSAGE_LIMIT = 200  # characters of the exception's first line on the one line printed


def report_dirs() -> list[Path]:
    """Where a crash report goes, first writable wins: perfci's cache (it outlives a temp dir), then the
    system temp dir (a read-only home, a cache on a full disk)."""
    return [envs.cache_dir() / "crashes", Path(tempfile.gettempdir())]


def write_report(exc: BaseException, *, argv: Sequence[str], dirs: Sequence[Path] | None = None,
                 now: datetime | None = None) -> Path | None:  # fmt: skip
    """Write `exc`'s traceback, with what perfci ran and where, to perfci-crash-<UTC time>-<pid>.txt in the
    first of `dirs` that takes it; None when none does."""
    now = now or datetime.now(UTC)
    text = (f"perfci {__version__} internal error at {now.isoformat(timespec='seconds')}\n"
            f"command: {' '.join(argv)}\n"
            f"python {platform.python_version()} on {platform.platform()}\n\n"
            + "".join(traceback.format_exception(exc)))  # fmt: skip
    name = f"perfci-crash-{now.strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}.txt"
    for directory in report_dirs() if dirs is None else dirs:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / name
            with open(path, "x", encoding="utf-8", errors="backslashreplace") as f:
                f.write(text)
            return path
        except OSError:
            continue
    return None


def summary(exc: BaseException, report: Path | None) -> str:
    """The one line printed: the exception's type, its message's first line, and where the traceback is."""
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else ""
    if len(message) > MESSAGE_LIMIT or len(lines) > 1:
        message = message[:MESSAGE_LIMIT] + "…"
    where = f"traceback written to {report}" if report else "no crash report could be written; traceback follows"
    what = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"internal error: {what}; {where}"


def handle(exc: BaseException, *, argv: Sequence[str] | None = None) -> str:
    """Report `exc`: write the crash file and return the line to print (with the traceback appended when no
    file could be written, so it is never lost)."""
    report = write_report(exc, argv=sys.argv if argv is None else argv)
    line = summary(exc, report)
    return line if report else line + "\n" + "".join(traceback.format_exception(exc)).rstrip()
