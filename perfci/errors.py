"""One error family. The CLI catches PerfciError once and turns it into a message and an exit code.

Exit codes are a contract that workflows rely on (docs/cli.md): each class of outcome has exactly one code.
"""

import signal

EXIT_OK = 0
EXIT_REGRESSION = 1  # only ever "a regression was found" (detect, compare and other verdict commands)
EXIT_USAGE = 2  # a bad option, suite, record or store file: the message names it
EXIT_MACHINE = 3  # the machine is not fit to measure on (GPU preflight, clocks that cannot be locked)
EXIT_EXTERNAL = 4  # an external service failed: GitHub, a package index
EXIT_RUN_NOT_OK = 5  # the engine failed, or a run ended not ok (degraded or failed); its record is stored
EXIT_INTERNAL = 70  # a bug in perfci (sysexits' EX_SOFTWARE): one line, the traceback in a file it names
EXIT_SIGNAL_BASE = 128  # a run stopped by SIGINT or SIGTERM exits 128 + the signal number (130, 143), as shells do


class PerfciError(Exception):
    """Base of every error perfci reports to a user; `exit_code` is what the CLI exits with."""

    exit_code = EXIT_USAGE


class ConfigError(PerfciError):
    """A suite or config file is wrong: names the file, the key path and the bad value."""

    exit_code = EXIT_USAGE


class RecordError(PerfciError):
    """A run record is corrupt, foreign, or of an unknown schema version."""

    exit_code = EXIT_USAGE


class EngineError(PerfciError):
    """An engine could not be installed, started, or kept running. Carries the log tail when there is one."""

    exit_code = EXIT_RUN_NOT_OK

    def __init__(self, message: str, *, log_tail: str = ""):
        super().__init__(message)
        self.log_tail = log_tail

    def __str__(self) -> str:
        base = super().__str__()
        if not self.log_tail:
            return base
        return f"{base}\n--- engine log (tail) ---\n{self.log_tail}"


class BuildError(EngineError):
    """A build could not be installed or run; bisect treats it as 'skip' (git bisect's exit 125)."""


class StoreError(PerfciError):
    """The SQLite store cannot be opened or migrated; the message names the file."""

    exit_code = EXIT_USAGE


class HardwareError(PerfciError):
    """The machine is not fit to measure on: a dirty GPU (unless the user forces the run), or GPU clocks that
    cannot be locked as the suite asks."""

    exit_code = EXIT_MACHINE


class SourceError(PerfciError):
    """A build source (a package index, GitHub) could not be reached or answered something unreadable."""

    exit_code = EXIT_EXTERNAL


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a run. A KeyboardInterrupt, not a PerfciError, so that it unwinds through
    everything as Ctrl-C does (asyncio re-raises it, `except Exception` lets it pass) and every `finally`
    runs: engines stopped, temp dirs removed. The runner attaches the record of what was measured; the CLI
    exits with `exit_code`."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = EXIT_SIGNAL_BASE + signum
        self.record = None  # the run record of what was measured, once there is one
        self.stored: str | None = None  # the file that record was written to (it is in the store too)

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        if self.stored is None:
            return f"stopped by {name}; nothing was measured"
        return f"stopped by {name}; what was measured is stored, and its record is {self.stored}"
