"""perfci: continuous performance-regression CI for LLM inference engines."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("perfci")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
