"""GPU clock locking and the noise checks of `perfci doctor`, against a fake NVML (tests/fake_nvml/pynvml.py)
whose GPUs keep their state in a JSON file: locked clocks, the clock a locked GPU reaches, persistence mode,
and the NVML errors a call can be refused with. Runs are real sim-engine runs; the signal test stops a real
`perfci run` process."""

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfci import config
from perfci.errors import EXIT_MACHINE, EXIT_SIGNAL_BASE, ConfigError, HardwareError
from perfci.measure import clocks, runner
from perfci.measure.server import port_in_use
from tests.lifetime import engine_processes, left_over, records_in, start_perfci, wait_for

FAKE_DIR = Path(__file__).parent / "fake_nvml"
ROOT = Path(__file__).resolve().parents[1]
H200 = {"name": "NVIDIA H200", "base_mhz": 1755, "max_mhz": 1980, "idle_mhz": 345, "locked": None,
        "persistence": True, "throttled_mhz": None}  # fmt: skip


class FakeGpus:
    """The fake NVML's state file: what the GPUs are set to, and what was asked of them."""

    def __init__(self, path: Path, n: int = 2):
        self.path = path
        self.write({"gpus": [{**H200, "uuid": f"GPU-{i}", "reached_mhz": H200["idle_mhz"]} for i in range(n)],
                    "refuse": {}, "calls": []})  # fmt: skip

    def read(self) -> dict:
        return json.loads(self.path.read_text())

    def write(self, state: dict) -> None:
        self.path.write_text(json.dumps(state))

    def update(self, fn) -> None:
        state = self.read()
        fn(state)
        self.write(state)

    def locked(self) -> list:
        return [g["locked"] for g in self.read()["gpus"]]

    def calls(self) -> list:
        return self.read()["calls"]


@pytest.fixture
def fake_gpus(tmp_path, monkeypatch):
    """This process sees the fake NVML as `pynvml` (hardware.fingerprint, preflight and telemetry too)."""
    gpus = FakeGpus(tmp_path / "nvml.json")
    monkeypatch.setenv("FAKE_NVML_STATE", str(gpus.path))
    spec = importlib.util.spec_from_file_location("pynvml", FAKE_DIR / "pynvml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return gpus


def refuse(gpus: FakeGpus, call: str, code: int) -> None:
    gpus.update(lambda s: s["refuse"].__setitem__(call, code))


def test_lock_base_locks_every_gpu_at_its_base_clock_and_unlock_resets_them(fake_gpus):
    lock = clocks.lock("base")
    assert lock.locked_mhz == [1755, 1755]
    assert fake_gpus.locked() == [[1755, 1755], [1755, 1755]]
    assert lock.sample() == {clocks.OFF_TARGET: 0}
    lock.unlock()
    assert lock.unlocked and lock.errors == []
    assert fake_gpus.locked() == [None, None]
    assert fake_gpus.calls() == [["lock", 0, 1755, 1755], ["lock", 1, 1755, 1755], ["reset", 0], ["reset", 1]]


def test_lock_max_or_a_clock_in_mhz(fake_gpus):
    clocks.lock("max").unlock()
    clocks.lock(1410).unlock()
    assert [c[2] for c in fake_gpus.calls() if c[0] == "lock"] == [1980, 1980, 1410, 1410]
    with pytest.raises(HardwareError, match="GPU 0 \\(NVIDIA H200\\) runs at most 1980 MHz"):
        clocks.lock(2500)
    assert fake_gpus.locked() == [None, None]


def test_no_permission_is_machine_not_ready_and_says_what_to_do(fake_gpus):
    refuse(fake_gpus, "nvmlDeviceSetGpuLockedClocks", 4)  # NVML_ERROR_NO_PERMISSION
    with pytest.raises(HardwareError) as e:
        clocks.lock("base")
    assert e.value.exit_code == EXIT_MACHINE
    msg = str(e.value)
    assert "no permission" in msg and "Insufficient Permissions" in msg
    assert "run perfci as root" in msg and "nvidia-smi -lgc" in msg
    assert fake_gpus.locked() == [None, None]


def test_a_gpu_refusing_the_lock_leaves_none_locked(fake_gpus):
    """GPU 1 does not support locking: GPU 0, already locked, is reset before the error goes up."""
    fake_gpus.update(lambda s: s["gpus"][1].__setitem__("refuse", {"nvmlDeviceSetGpuLockedClocks": 3}))
    with pytest.raises(HardwareError, match="GPU 1 does not support clock locking \\(.*Not Supported\\)"):
        clocks.lock("base")
    assert fake_gpus.locked() == [None, None]
    assert fake_gpus.calls() == [["lock", 0, 1755, 1755], ["reset", 0]]


def test_lock_without_any_gpu_is_refused(fake_gpus):
    fake_gpus.update(lambda s: s.__setitem__("gpus", []))
    with pytest.raises(HardwareError, match="the NVIDIA driver sees no GPU"):
        clocks.lock("base")


def test_a_failed_reset_is_reported_with_the_command_that_fixes_it(fake_gpus):
    lock = clocks.lock("max")
    refuse(fake_gpus, "nvmlDeviceResetGpuLockedClocks", 4)
    lock.unlock()
    assert not lock.unlocked and len(lock.errors) == 2  # GPU 1 was still tried after GPU 0 failed
    assert "GPU 0 is still locked at 1980 MHz" in lock.errors[0] and "sudo nvidia-smi -i 0 -rgc" in lock.errors[0]


SUITE = """
name = "t"
[[models]]
name = "m"
[[workloads]]
name = "w"
prompt_tokens = 16
output_tokens = 8
load = {{ concurrency = [1, 2] }}
[run]
duration_s = {duration}
warmup_requests = 0
[startup]
caches = ["warm"]
[sim]
startup_s = 0.2
decode_ms_per_token = 5
{machine}
"""


def write_suite(tmp_path: Path, *, lock: str = '"base"', duration: float = 1.5) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(SUITE.format(duration=duration, machine=f"[machine]\nlock_clocks = {lock}" if lock else ""))
    return path


def test_run_with_locked_clocks_verifies_them_at_every_point_and_unlocks(tmp_path, fake_gpus):
    record = runner.run_suite(suite=config.load_suite(write_suite(tmp_path)), target=runner.resolve_target(engine="sim"))
    assert record.status == "ok", record.error
    assert fake_gpus.locked() == [None, None]
    lock = record.hardware.fingerprint["clock_lock"]
    assert lock == {"setting": "base", "locked_mhz": [1755, 1755], "tolerance_mhz": 35, "worst_off_target_mhz": 0,
                    "points_checked": 2, "verified": True, "unlocked": True}  # fmt: skip
    for point in record.points:
        assert point.telemetry["samples"] >= 1 and point.telemetry[clocks.OFF_TARGET]["max"] == 0
        assert point.telemetry["sm_clock_mhz"]["min"] == 1755
    # The engine was stopped before the clocks were unlocked: the lock held for everything measured.
    assert [c[0] for c in fake_gpus.calls()] == ["lock", "lock", "reset", "reset"]


def test_a_gpu_that_cannot_hold_its_lock_makes_the_run_degraded(tmp_path, fake_gpus):
    fake_gpus.update(lambda s: s["gpus"][1].__setitem__("throttled_mhz", 1500))  # power-capped below the lock
    record = runner.run_suite(suite=config.load_suite(write_suite(tmp_path)), target=runner.resolve_target(engine="sim"))
    assert record.status == "degraded"
    assert "GPU clocks left their lock ([1755, 1755] MHz, tolerance 35 MHz): point 0 (w c=1) 255 MHz off" in record.error
    assert record.hardware.fingerprint["clock_lock"]["verified"] is False
    assert record.hardware.fingerprint["clock_lock"]["worst_off_target_mhz"] == 255
    assert fake_gpus.locked() == [None, None]


def test_a_run_that_cannot_unlock_says_so_in_its_record(tmp_path, fake_gpus):
    refuse(fake_gpus, "nvmlDeviceResetGpuLockedClocks", 999)
    record = runner.run_suite(suite=config.load_suite(write_suite(tmp_path, duration=0.6)),
                              target=runner.resolve_target(engine="sim"))  # fmt: skip
    assert record.status == "degraded" and "GPU 1 is still locked at 1755 MHz" in record.error
    assert record.hardware.fingerprint["clock_lock"]["unlocked"] is False


def test_unlocked_runs_leave_the_clocks_alone(tmp_path, fake_gpus):
    record = runner.run_suite(suite=config.load_suite(write_suite(tmp_path, lock="", duration=0.6)),
                              target=runner.resolve_target(engine="sim"))  # fmt: skip
    assert record.status == "ok" and "clock_lock" not in record.hardware.fingerprint
    assert fake_gpus.calls() == []


def fake_env(gpus: FakeGpus) -> dict[str, str]:
    return {"PYTHONPATH": f"{FAKE_DIR}:{ROOT}", "FAKE_NVML_STATE": str(gpus.path)}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_run_stopped_by_a_signal_unlocks_the_clocks(tmp_path, sig):
    gpus = FakeGpus(tmp_path / "nvml.json")
    write_suite(tmp_path, lock='"max"', duration=30)
    perfci, marker = start_perfci(["run", "--suite", "t.toml", "--engine", "sim", "--db", "p.db", "--out", "runs"],
                                  tmp_path, env=fake_env(gpus))  # fmt: skip
    (_, cmd), *_ = wait_for(lambda: engine_processes(marker, perfci.pid, "perfci.measure.simulator"), timeout_s=60,
                            what="the engine")  # fmt: skip
    words = cmd.split()
    wait_for(lambda: port_in_use(int(words[words.index("--port") + 1])), timeout_s=30, what="the engine's port")
    assert gpus.locked() == [[1980, 1980], [1980, 1980]]
    time.sleep(2.0)  # inside the first point
    perfci.send_signal(sig)
    _, err = perfci.communicate(timeout=60)
    assert perfci.returncode == EXIT_SIGNAL_BASE + sig, err
    assert gpus.locked() == [None, None]
    assert left_over(marker, timeout_s=5) == []
    (record,) = records_in(tmp_path / "runs")
    assert record["status"] == "interrupted"
    assert record["hardware"]["fingerprint"]["clock_lock"]["unlocked"] is True


def test_cli_lock_clocks_refused_for_lack_of_rights_exits_3_measuring_nothing(tmp_path):
    gpus = FakeGpus(tmp_path / "nvml.json")
    refuse(gpus, "nvmlDeviceSetGpuLockedClocks", 4)
    write_suite(tmp_path, lock="")
    env = {**fake_env(gpus), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-m", "perfci", "run", "--suite", "t.toml", "--engine", "sim", "--db", "p.db",
                        "--out", "runs", "--lock-clocks", "base"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert p.returncode == EXIT_MACHINE, p.stderr + p.stdout
    out = " ".join((p.stdout + p.stderr).split())
    assert "cannot lock the clocks of GPU 0: no permission" in out and "run perfci as root" in out
    assert records_in(tmp_path / "runs") == [] and gpus.locked() == [None, None]


def test_lock_clocks_override_is_validated_and_splits_the_series(tmp_path):
    suite = config.load_suite(write_suite(tmp_path, lock=""))
    assert config.with_lock_clocks(suite, None) is suite
    assert config.with_lock_clocks(suite, "off") is suite
    locked = config.with_lock_clocks(suite, "max")
    assert locked.machine.lock_clocks == "max" and locked.content_hash != suite.content_hash
    assert config.with_lock_clocks(suite, "1410").machine.lock_clocks == 1410
    with pytest.raises(ConfigError, match="--lock-clocks 'fast': expected base, max, off or a clock in MHz"):
        config.with_lock_clocks(suite, "fast")


def test_suite_rejects_a_bad_lock_clocks_naming_the_key(tmp_path):
    for bad in ('"fast"', "0", "true"):
        with pytest.raises(ConfigError, match="machine.lock_clocks"):
            config.load_suite(write_suite(tmp_path, lock=bad))


def test_doctor_checks_persistence_mode_and_the_cpu_governor(fake_gpus, tmp_path):
    fake_gpus.update(lambda s: s["gpus"][1].__setitem__("persistence", False))
    checks = {c.name: c for c in clocks.machine_checks(governors=["performance", "powersave"])}
    assert checks["gpu 0 persistence mode"].value == "on" and checks["gpu 0 persistence mode"].ok
    off = checks["gpu 1 persistence mode"]
    assert off.value == "off" and off.ok is False and "nvidia-smi -pm 1" in off.advice
    gov = checks["cpu governor"]
    assert gov.value == "performance, powersave" and gov.ok is False and "performance" in gov.advice
    # Where cpufreq is not exposed (VMs, containers), the governor is "not available", not a problem.
    assert clocks.cpu_governors(root=str(tmp_path)) == []
    (na,) = [c for c in clocks.machine_checks(governors=[]) if c.name == "cpu governor"]
    assert na.value == "not available" and na.ok is None
    for i in range(2):
        (tmp_path / f"cpu{i}" / "cpufreq").mkdir(parents=True)
        (tmp_path / f"cpu{i}" / "cpufreq" / "scaling_governor").write_text("performance\n")
    assert clocks.cpu_governors(root=str(tmp_path)) == ["performance", "performance"]


def test_doctor_json_lists_the_settings(tmp_path):
    gpus = FakeGpus(tmp_path / "nvml.json", n=1)
    gpus.update(lambda s: s["gpus"][0].__setitem__("persistence", False))
    p = subprocess.run([sys.executable, "-m", "perfci", "doctor", "--json"], env={**fake_env(gpus), "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    settings = {s["name"]: s for s in json.loads(p.stdout)["settings"]}
    assert settings["gpu 0 persistence mode"]["ok"] is False
    assert "cpu governor" in settings


class Smi:
    """A stand-in for the nvidia-smi command: answers queries, records the rest, refuses what it is told to."""

    def __init__(self, refuse: str = ""):
        self.argv: list[list[str]] = []
        self.refuse = refuse

    def __call__(self, argv):
        self.argv.append(argv)
        if self.refuse and self.refuse in argv:
            return subprocess.CompletedProcess(argv, 4, "", "Setting locked clocks requires root privileges.\n")
        if "--query-gpu=index" in argv:
            return subprocess.CompletedProcess(argv, 0, "0\n", "")
        if any(a.startswith("--query-gpu=") for a in argv):
            return subprocess.CompletedProcess(argv, 0, "NVIDIA H200, 1755, 1980, 1755, Disabled\n", "")
        return subprocess.CompletedProcess(argv, 0, "", "")


def test_nvidia_smi_fallback_locks_with_lgc_and_resets_with_rgc():
    smi = Smi()
    lock = clocks.lock("base", gpus_=clocks.NvidiaSmi(run=smi))
    assert lock.sample() == {clocks.OFF_TARGET: 0}
    lock.unlock()
    assert ["nvidia-smi", "-i", "0", "-lgc", "1755,1755"] in smi.argv and smi.argv[-1] == ["nvidia-smi", "-i", "0", "-rgc"]
    assert clocks.NvidiaSmi(run=smi).persistence(0) is False
    with pytest.raises(HardwareError, match="no permission .*requires root privileges.*run perfci as root"):
        clocks.lock("max", gpus_=clocks.NvidiaSmi(run=Smi(refuse="-lgc")))
