"""What a run record may keep of the machine it ran on: no home or checkout directories, no credentials.

Records travel (test fixtures, the data location, pull request comments), so what perfci saw is rewritten
before a record is built: a path under the working directory becomes relative to it, a path in a home
directory starts with `~` (any home: `/root`, `/home/NAME`, `/Users/NAME`, besides the given one), URLs lose
their `user:password@`, and tokens in arguments and log text become `***`. What describes the benchmark
host as pyperf describes it (hostname, platform, hardware fingerprint) is kept.

Pure: the home and working directories are arguments; None (or `/`) skips that rewrite.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any

MASK = "***"

# A path starts where the character before it cannot belong to a path component, and a directory matches
# only as a whole component: `/rootfs` is not in `/root`, and `x/root` is a relative path, not root's home.
_IN_NAME = r"[\w.~-]"
_ANY_HOME = r"/root|/home/[\w.-]+|/Users/[\w.-]+"

# `scheme://userinfo@`: userinfo runs to the last `@` of the authority, as urllib.parse reads it.
_URL_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s?#]*@")
# Names that end in a secret word (`api_key`, `HF_TOKEN`, `GITHUB_TOKEN_V2`), not `max_tokens`.
_SECRET_QUERY = re.compile(r"(?i)([?&][\w.-]*(?:token|key|secret|password|passwd|sig|signature)=)[^&#\s]+")
_SECRET_ENV = re.compile(r"\b([A-Z][A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY)(?:_[A-Z0-9_]*)?=)\S+")
_AUTH_HEADER = re.compile(r"\b([Bb]earer\s+)[A-Za-z0-9._~+/-]{16,}=*|\b(Basic\s+)[A-Za-z0-9+/]{16,}=*")
# Tokens that announce themselves by prefix: Hugging Face, GitHub, OpenAI-style keys, Slack, AWS key ids.
_KNOWN_TOKENS = re.compile(
    r"\b(?:hf_[A-Za-z0-9]{30,}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}|sk-[A-Za-z0-9_-]{20,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})\b"
)
# Option names whose value is a secret: a word of the name, so `--max-num-batched-tokens` is not one, and
# `--admin-token-file` names a file, not a token.
_SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "passwd", "auth"}
_NOT_SECRET_LAST = {"file", "path", "dir"}


def redact_path(path: str, *, home: str | None, cwd: str | None) -> str:
    """An absolute path under `cwd` relative to it (`.` for `cwd` itself), one under a home directory as
    `~/…`; anything else unchanged."""
    return _paths_pattern(home, cwd).sub(_path_replacement, path)


def redact_text(text: str, *, home: str | None, cwd: str | None) -> str:
    """Free text (log lines, error messages, one argument): paths as `redact_path` writes them wherever they
    start, URL credentials dropped, secret query values, `NAME_TOKEN=…` values and known tokens masked."""
    text = _URL_USERINFO.sub(r"\1", text)
    text = _SECRET_QUERY.sub(rf"\1{MASK}", text)
    text = _SECRET_ENV.sub(rf"\1{MASK}", text)
    text = _AUTH_HEADER.sub(lambda m: (m.group(1) or m.group(2)) + MASK, text)
    text = _KNOWN_TOKENS.sub(MASK, text)
    return redact_path(text, home=home, cwd=cwd)


def redact_argv(argv: Sequence[str], *, home: str | None, cwd: str | None) -> list[str]:
    """Each argument as `redact_text` writes it, and the value of a secret option (`--api-key X`,
    `--hf-token=X`) masked."""
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next and not arg.startswith("-"):
            out.append(MASK)
            mask_next = False
            continue
        mask_next = False
        name, eq, _ = arg.partition("=")
        if _is_secret_option(name):
            if eq:
                out.append(f"{name}={MASK}")
            else:
                out.append(arg)
                mask_next = True
            continue
        out.append(redact_text(arg, home=home, cwd=cwd))
    return out


def redact_url(url: str) -> str:
    """`scheme://host[:port]/path`: without `user:password@`, query string or fragment (where tokens go)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return re.split(r"[?#]", url, maxsplit=1)[0]
    end = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    host = rest[:end].rpartition("@")[2]
    path = re.split(r"[?#]", rest[end:], maxsplit=1)[0]
    return f"{scheme}://{host}{path}"


def program_name(argv0: str) -> str:
    """How a command was started, without where it is installed: `perfci`, or `perfci/__main__.py` for
    `python -m perfci`."""
    p = PurePosixPath(argv0)
    return f"{p.parent.name}/{p.name}" if p.name == "__main__.py" and p.parent.name else p.name or argv0


def redact_source(source: str, *, home: str | None, cwd: str | None) -> str:
    """A build's source: an endpoint as `redact_url` writes it, anything else (a git URL, a python path) as
    `redact_text` does."""
    kind, sep, rest = source.partition(":")
    if kind == "endpoint" and sep:
        return f"endpoint:{redact_url(rest)}"
    return redact_text(source, home=home, cwd=cwd)


def redact_command(argv: Sequence[str], *, home: str | None, cwd: str | None) -> list[str]:
    """A command line: its program's name (not where it is installed), then the arguments as `redact_argv`
    writes them."""
    return [program_name(argv[0]), *redact_argv(argv[1:], home=home, cwd=cwd)] if argv else []


def redact_record(data: dict[str, Any], *, home: str | None, cwd: str | None) -> dict[str, Any]:
    """A run record dict with every field that holds what the machine or the user passed in redacted: the
    suite path, the build source, both command lines, errors, startup log lines and the log tail. Fields of
    an unexpected type are left for validation to refuse. Returns a new dict."""

    def text(value: Any) -> Any:
        return redact_text(value, home=home, cwd=cwd) if isinstance(value, str) else value

    out = dict(data)
    suite, build, env = data.get("suite"), data.get("build"), data.get("environment")
    if isinstance(suite, dict) and isinstance(suite.get("path"), str):
        out["suite"] = {**suite, "path": redact_path(suite["path"], home=home, cwd=cwd)}
    if isinstance(build, dict) and isinstance(build.get("source"), str):
        out["build"] = {**build, "source": redact_source(build["source"], home=home, cwd=cwd)}
    if _strings(data.get("engine_argv")):
        out["engine_argv"] = redact_argv(data["engine_argv"], home=home, cwd=cwd)
    if isinstance(env, dict) and _strings(env.get("perfci_argv")):
        out["environment"] = {**env, "perfci_argv": redact_command(env["perfci_argv"], home=home, cwd=cwd)}
    out.update({key: text(data[key]) for key in ("error", "log_tail") if key in data})
    if isinstance(data.get("startups"), list):
        out["startups"] = [_redact_startup(s, text) for s in data["startups"]]
    if isinstance(data.get("points"), list):
        out["points"] = [_redact_point(p, text) for p in data["points"]]
    return out


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _redact_startup(startup: Any, text: Callable[[Any], Any]) -> Any:
    if not isinstance(startup, dict):
        return startup
    out = {**startup, **({"error": text(startup["error"])} if "error" in startup else {})}
    if isinstance(startup.get("lines"), list):
        out["lines"] = [text(line) for line in startup["lines"]]
    return out


def _redact_point(point: Any, text: Callable[[Any], Any]) -> Any:
    if not isinstance(point, dict):
        return point
    out = {**point, **({"error": text(point["error"])} if "error" in point else {})}
    requests = point.get("requests")
    if isinstance(requests, dict) and isinstance(requests.get("error"), list):
        out["requests"] = {**requests, "error": [text(e) for e in requests["error"]]}
    return out


def _is_secret_option(name: str) -> bool:
    if not name.startswith("-"):
        return False
    words = re.split(r"[-_]+", name.lstrip("-").lower())
    return bool(_SECRET_WORDS.intersection(words)) and words[-1] not in _NOT_SECRET_LAST


def _usable(directory: str | None) -> str | None:
    if not directory:
        return None
    directory = directory.rstrip("/")
    return directory if directory.startswith("/") else None  # "/" and relative directories: nothing to do


@functools.lru_cache(maxsize=8)
def _paths_pattern(home: str | None, cwd: str | None) -> re.Pattern[str]:
    home, cwd = _usable(home), _usable(cwd)
    # Longest first, so the more specific directory wins when one holds the other.
    known = sorted(((d, g) for d, g in ((cwd, "cwd"), (home, "home")) if d), key=lambda x: -len(x[0]))
    alternatives = []
    for directory, group in known:
        if group == "cwd":
            # Its trailing slash goes with it when a name follows: /cwd/x -> x, /cwd -> .
            alternatives.append(rf"(?P<cwd>{re.escape(directory)}(?:/(?={_IN_NAME})|(?!{_IN_NAME})))")
        else:
            alternatives.append(rf"(?P<home>{re.escape(directory)})(?!{_IN_NAME})")
    alternatives.append(rf"(?P<any>{_ANY_HOME})(?!{_IN_NAME})")
    return re.compile(rf"(?<!{_IN_NAME})(?:{'|'.join(alternatives)})")


def _path_replacement(match: re.Match[str]) -> str:
    if match.lastgroup == "cwd":
        return "" if match.group(0).endswith("/") else "."
    return "~"
