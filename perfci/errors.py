"""One error family. The CLI catches PerfciError once and turns it into a message and an exit code."""


class PerfciError(Exception):
    """Base of every error perfci reports to a user; `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(PerfciError):
    """A suite or config file is wrong: names the file, the key path and the bad value."""

    exit_code = 2


class RecordError(PerfciError):
    """A run record is corrupt, foreign, or of an unknown schema version."""

    exit_code = 2


class EngineError(PerfciError):
    """An engine could not be installed, started, or kept running. Carries the log tail when there is one."""

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
    """The SQLite store cannot be opened or migrated."""


class HardwareError(PerfciError):
    """The machine is not fit to measure on (a dirty GPU), unless the user forces the run."""

    exit_code = 3


class SourceError(PerfciError):
    """A build source (a package index, GitHub) could not be reached or answered something unreadable."""

    exit_code = 4
