"""GPU noise control: lock every NVIDIA GPU's SM clock for a run, check during the run that the clocks stayed
there, and undo the lock at its end; plus the machine settings `perfci doctor` reports (GPU persistence mode,
CPU frequency governor).

A GPU left to itself boosts as temperature and power allow, so the same build measures faster on a cool GPU
than on a warm one: clock boosting is one of the main sources of run-to-run noise on GPUs. Locking the SM
clock (what `nvidia-smi -lgc` does) takes that away. NVML (nvidia-ml-py, the `gpu` extra) is used when it is
installed, else the `nvidia-smi` command. NVML cannot read a lock back, so the end of a run resets the GPUs
to the driver's default (`nvidia-smi -rgc`), whatever was set before.
"""

from __future__ import annotations

import contextlib
import glob
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from perfci.errors import HardwareError

# A locked GPU runs at the locked clock or, when power or temperature force it, below; a reading more than
# this far from the lock means the run was not measured at the clock asked for.
TOLERANCE_FRACTION = 0.02
MIN_TOLERANCE_MHZ = 30
OFF_TARGET = "sm_clock_off_target_mhz"  # point telemetry key: |reached - locked| SM clock, worst GPU

HOW_TO_ALLOW = ("locking GPU clocks needs root: run perfci as root (or as a user allowed to run "
                "`nvidia-smi -lgc`), or lock the clocks yourself before the run (`sudo nvidia-smi -lgc MHZ,MHZ`) "
                "and leave `[machine] lock_clocks` unset")  # fmt: skip


class ClockRefused(Exception):
    """A GPU refused a clock request; `kind` is "permission", "unsupported" or "other"."""

    def __init__(self, message: str, kind: str = "other"):
        super().__init__(message)
        self.kind = kind


class Gpus(Protocol):
    """The few GPU controls clock locking needs (NVML or nvidia-smi behind it)."""

    def count(self) -> int: ...
    def name(self, i: int) -> str: ...
    def base_mhz(self, i: int) -> int: ...
    def max_mhz(self, i: int) -> int: ...
    def sm_mhz(self, i: int) -> int: ...
    def persistence(self, i: int) -> bool | None: ...
    def lock(self, i: int, mhz: int) -> None: ...
    def reset(self, i: int) -> None: ...


class Nvml:
    """Through pynvml (nvidia-ml-py)."""

    def __init__(self, nv: Any):
        self.nv = nv

    def _h(self, i: int) -> Any:
        return self._call(self.nv.nvmlDeviceGetHandleByIndex, i)

    def count(self) -> int:
        return self._call(self.nv.nvmlDeviceGetCount)

    def name(self, i: int) -> str:
        name = self._call(self.nv.nvmlDeviceGetName, self._h(i))
        return name.decode() if isinstance(name, bytes) else str(name)

    def base_mhz(self, i: int) -> int:
        return self._call(self.nv.nvmlDeviceGetDefaultApplicationsClock, self._h(i), self.nv.NVML_CLOCK_GRAPHICS)

    def max_mhz(self, i: int) -> int:
        return self._call(self.nv.nvmlDeviceGetMaxClockInfo, self._h(i), self.nv.NVML_CLOCK_SM)

    def sm_mhz(self, i: int) -> int:
        return self._call(self.nv.nvmlDeviceGetClockInfo, self._h(i), self.nv.NVML_CLOCK_SM)

    def persistence(self, i: int) -> bool | None:
        try:
            return self._call(self.nv.nvmlDeviceGetPersistenceMode, self._h(i)) == self.nv.NVML_FEATURE_ENABLED
        except ClockRefused:
            return None

    def lock(self, i: int, mhz: int) -> None:
        self._call(self.nv.nvmlDeviceSetGpuLockedClocks, self._h(i), mhz, mhz)

    def reset(self, i: int) -> None:
        self._call(self.nv.nvmlDeviceResetGpuLockedClocks, self._h(i))

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self.nv.NVMLError as e:
            kinds = {self.nv.NVML_ERROR_NO_PERMISSION: "permission", self.nv.NVML_ERROR_NOT_SUPPORTED: "unsupported"}
            raise ClockRefused(f"{fn.__name__}: {e}", kinds.get(getattr(e, "value", None), "other")) from e


class NvidiaSmi:
    """Through the `nvidia-smi` command, for machines without nvidia-ml-py."""

    QUERY = "name,clocks.default_applications.graphics,clocks.max.sm,clocks.sm,persistence_mode"

    def __init__(self, run: Callable[[list[str]], subprocess.CompletedProcess] | None = None):
        self.run = run or (lambda argv: subprocess.run(argv, capture_output=True, text=True, timeout=30))

    def _smi(self, *args: str) -> str:
        try:
            p = self.run(["nvidia-smi", *args])
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ClockRefused(f"nvidia-smi {' '.join(args)}: {e}") from e
        if p.returncode != 0:
            out = (p.stdout + p.stderr).strip()
            low = out.lower()
            kind = ("permission" if "permission" in low or "root" in low
                    else "unsupported" if "not supported" in low else "other")  # fmt: skip
            raise ClockRefused(f"nvidia-smi {' '.join(args)}: {out or f'exit {p.returncode}'}", kind)
        return p.stdout

    def _row(self, i: int) -> list[str]:
        out = self._smi("-i", str(i), f"--query-gpu={self.QUERY}", "--format=csv,noheader,nounits")
        return [c.strip() for c in out.strip().splitlines()[0].split(",")]

    def count(self) -> int:
        return len(self._smi("--query-gpu=index", "--format=csv,noheader").split())

    def name(self, i: int) -> str:
        return self._row(i)[0]

    def base_mhz(self, i: int) -> int:
        return int(float(self._row(i)[1]))

    def max_mhz(self, i: int) -> int:
        return int(float(self._row(i)[2]))

    def sm_mhz(self, i: int) -> int:
        return int(float(self._row(i)[3]))

    def persistence(self, i: int) -> bool | None:
        value = self._row(i)[4]
        return {"enabled": True, "disabled": False}.get(value.lower())

    def lock(self, i: int, mhz: int) -> None:
        self._smi("-i", str(i), "-lgc", f"{mhz},{mhz}")

    def reset(self, i: int) -> None:
        self._smi("-i", str(i), "-rgc")


def gpus() -> Gpus | None:
    """NVML when nvidia-ml-py and a driver are there, else nvidia-smi when it is on PATH, else None."""
    from perfci.measure import hardware

    nv = hardware._nvml()
    if nv is not None:
        return Nvml(nv)
    return NvidiaSmi() if shutil.which("nvidia-smi") else None


@dataclass
class Lock:
    """GPUs whose SM clock this run locked, and what it saw of them."""

    gpus: Gpus
    setting: str | int
    locked_mhz: list[int]
    errors: list[str] = field(default_factory=list)  # reset failures: the GPU is left locked
    unlocked: bool = False

    def tolerance_mhz(self) -> int:
        return max(MIN_TOLERANCE_MHZ, round(min(self.locked_mhz) * TOLERANCE_FRACTION))

    def sample(self) -> dict[str, float]:
        """One telemetry reading: the SM clock furthest from its lock, as a distance in MHz."""
        with contextlib.suppress(ClockRefused):
            return {OFF_TARGET: max(abs(self.gpus.sm_mhz(i) - m) for i, m in enumerate(self.locked_mhz))}
        return {}

    def unlock(self) -> None:
        """Reset every locked GPU, each even when another fails (the failures are kept in `errors`)."""
        for i in range(len(self.locked_mhz)):
            try:
                self.gpus.reset(i)
            except ClockRefused as e:
                self.errors.append(f"GPU {i} is still locked at {self.locked_mhz[i]} MHz ({e}); "
                                   f"reset it with `sudo nvidia-smi -i {i} -rgc`")  # fmt: skip
        self.unlocked = not self.errors

    def off_target(self, points: Sequence[dict]) -> list[str]:
        """The measured points whose SM clock left the lock by more than the tolerance."""
        limit = self.tolerance_mhz()
        out = []
        for p in points:
            worst = (p.get("telemetry") or {}).get(OFF_TARGET, {}).get("max")
            if worst is not None and worst > limit:
                out.append(f"point {p['index']} ({p['workload']} {p['load_label']}) {worst:.0f} MHz off")
        return out

    def summary(self, points: Sequence[dict]) -> dict[str, Any]:
        """What the run record keeps (hardware.fingerprint.clock_lock; docs/records.md)."""
        seen = [(p.get("telemetry") or {}).get(OFF_TARGET, {}).get("max") for p in points]
        seen = [v for v in seen if v is not None]
        return {"setting": self.setting, "locked_mhz": self.locked_mhz, "tolerance_mhz": self.tolerance_mhz(),
                "worst_off_target_mhz": max(seen) if seen else None, "points_checked": len(seen),
                "verified": bool(seen) and not self.off_target(points), "unlocked": self.unlocked}  # fmt: skip


def target_mhz(g: Gpus, i: int, setting: str | int) -> int:
    """The clock `setting` means on GPU i; a clock in MHz above the GPU's highest is refused."""
    if setting == "base":
        return g.base_mhz(i)
    highest = g.max_mhz(i)
    if setting == "max":
        return highest
    if int(setting) > highest:
        raise HardwareError(f"[machine] lock_clocks = {setting}: GPU {i} ({g.name(i)}) runs at most {highest} MHz")
    return int(setting)


def lock(setting: str | int, *, gpus_: Gpus | None = None) -> Lock:
    """Lock every GPU's SM clock to `setting` ("base", "max" or MHz). All or none: when one GPU refuses, the
    ones already locked are reset before the HardwareError (exit 3) goes up."""
    g = gpus_ if gpus_ is not None else gpus()
    if g is None:
        raise HardwareError(f"[machine] lock_clocks = {setting!r}: no NVIDIA GPU here (neither NVML nor nvidia-smi "
                            "found); leave lock_clocks unset on machines without one")  # fmt: skip
    held = Lock(gpus=g, setting=setting, locked_mhz=[])
    try:
        n = g.count()
        if n == 0:
            raise HardwareError(f"[machine] lock_clocks = {setting!r}: the NVIDIA driver sees no GPU")
        for i in range(n):
            mhz = target_mhz(g, i, setting)
            g.lock(i, mhz)
            held.locked_mhz.append(mhz)
    except (ClockRefused, HardwareError) as e:
        held.unlock()
        left = "".join(f"; {err}" for err in held.errors)
        if isinstance(e, HardwareError):
            raise HardwareError(f"{e}{left}") from e
        gpu = len(held.locked_mhz)
        if e.kind == "permission":
            why = f"cannot lock the clocks of GPU {gpu}: no permission ({e}); {HOW_TO_ALLOW}"
        elif e.kind == "unsupported":
            why = f"GPU {gpu} does not support clock locking ({e}); leave `[machine] lock_clocks` unset on this machine"
        else:
            why = f"cannot lock the clocks of GPU {gpu}: {e}"
        raise HardwareError(why + left) from e
    return held


@dataclass
class Check:
    """One machine setting `perfci doctor` reports: its value, whether it suits measuring, and what to do."""

    name: str
    value: str
    ok: bool | None  # None: not available on this machine
    advice: str = ""


def cpu_governors(root: str = "/sys/devices/system/cpu") -> list[str]:
    """The CPU frequency governor of every CPU that has one (empty where cpufreq is not exposed, as in VMs)."""
    found = []
    for path in sorted(glob.glob(f"{root}/cpu[0-9]*/cpufreq/scaling_governor")):
        with contextlib.suppress(OSError):
            found.append(Path(path).read_text().strip())
    return found


def machine_checks(*, gpus_: Gpus | None = None, governors: Sequence[str] | None = None) -> list[Check]:
    """GPU persistence mode (each GPU) and the CPU frequency governor: settings that add noise when wrong."""
    checks = []
    govs = cpu_governors() if governors is None else list(governors)
    if not govs:
        checks.append(Check("cpu governor", "not available", None))
    else:
        kinds = sorted(set(govs))
        checks.append(Check("cpu governor", ", ".join(kinds), kinds == ["performance"],
                            "" if kinds == ["performance"] else
                            "set the `performance` governor (`sudo cpupower frequency-set -g performance`): "
                            "others change the CPU clock under load"))  # fmt: skip
    g = gpus_ if gpus_ is not None else gpus()
    if g is not None:
        with contextlib.suppress(ClockRefused):
            for i in range(g.count()):
                on = g.persistence(i)
                checks.append(Check(f"gpu {i} persistence mode", {True: "on", False: "off", None: "not available"}[on],
                                    on, "" if on is not False else
                                    "turn it on (`sudo nvidia-smi -pm 1`): without it the driver unloads while no "
                                    "process uses the GPU, dropping settings such as locked clocks, and every "
                                    "start pays for loading it again"))  # fmt: skip
    return checks
