"""One error family. The CLI catches PerfciError once and turns it into a message and an exit code.

Exit codes are a contract that workflows rely on (docs/cli.md): each class of outcome has exactly one code.
"""

EXIT_OK = 0
EXIT_REGRESSION = 1  # only ever "a regression was found" (detect, compare and other verdict commands)
EXIT_USAGE = 2  # a bad option, suite, record or store file: the message names it
EXIT_MACHINE = 3  # the machine is not fit to measure on (GPU preflight)
EXIT_EXTERNAL = 4  # an external service failed: GitHub, a package index
EXIT_RUN_NOT_OK = 5  # the engine failed, or a run ended not ok (degraded or failed); its record is stored
EXIT_INTERNAL = 70  # a bug in perfci (sysexits' EX_SOFTWARE): one line, the traceback in a file it names
# A run stopped by SIGINT or SIGTERM exits 128 + the signal number (130, 143), as shells report it.


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
    """The machine is not fit to measure on (a dirty GPU), unless the user forces the run."""

    exit_code = EXIT_MACHINE


class SourceError(PerfciError):
    """A build source (a package index, GitHub) could not be reached or answered something unreadable."""

    exit_code = EXIT_EXTERNAL
