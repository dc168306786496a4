"""The machine a run measured: fingerprint + canonical hardware label, preflight, telemetry per point.

GPUs are read through NVML (nvidia-ml-py, the optional `gpu` extra); without it the fingerprint
describes the CPU. The label is what series are keyed on (`h100`, `h200`, `b200`, `cpu-2c-…`).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

GPU_LABELS = (("H200", "h200"), ("H100", "h100"), ("B200", "b200"), ("GB200", "gb200"), ("A100", "a100"),
              ("L40S", "l40s"), ("L4", "l4"))  # fmt: skip


def _nvml():
    """The pynvml module, initialised, or None when there is no NVIDIA driver or no nvidia-ml-py."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # noqa: BLE001 — ImportError, NVMLError_LibraryNotFound, driver not loaded: no GPU
        return None


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def fingerprint() -> dict[str, Any]:
    fp: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "gpus": [],
    }
    nv = _nvml()
    if nv is not None:
        fp["driver"] = _text(nv.nvmlSystemGetDriverVersion())
        with contextlib.suppress(Exception):
            v = nv.nvmlSystemGetCudaDriverVersion_v2()
            fp["cuda"] = f"{v // 1000}.{v % 1000 // 10}"
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            fp["gpus"].append(
                {
                    "name": _text(nv.nvmlDeviceGetName(h)),
                    "memory_gib": round(nv.nvmlDeviceGetMemoryInfo(h).total / 2**30, 1),
                    "uuid": _text(nv.nvmlDeviceGetUUID(h)),
                }
            )
    fp["label"] = label(fp)
    return fp


def label(fp: dict[str, Any]) -> str:
    """Canonical hardware label: the GPU family (with `xN` for several), else `cpu-<cores>c-<cpu slug>`."""
    gpus = fp.get("gpus") or []
    if gpus:
        name = gpus[0]["name"]
        family = next((lab for key, lab in GPU_LABELS if key in name.upper()), _slug(name))
        return family if len(gpus) == 1 else f"{family}x{len(gpus)}"
    return f"cpu-{fp.get('cpu_cores')}c-{_slug(fp.get('cpu', 'unknown'))}"


def _slug(text: str) -> str:
    text = re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*$", "", text, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:32] or "unknown"


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass
class Preflight:
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


def preflight(*, max_used_gib: float = 1.0) -> Preflight:
    """Refuse a dirty GPU: foreign processes, memory in use, ECC or remapped-row errors."""
    result = Preflight()
    nv = _nvml()
    if nv is None:
        return result
    for i in range(nv.nvmlDeviceGetCount()):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        procs = nv.nvmlDeviceGetComputeRunningProcesses(h)
        if procs:
            result.problems.append(f"GPU {i}: {len(procs)} process(es) running: {[p.pid for p in procs]}")
        used = nv.nvmlDeviceGetMemoryInfo(h).used / 2**30
        if used > max_used_gib:
            result.problems.append(f"GPU {i}: {used:.1f} GiB memory in use")
        with contextlib.suppress(Exception):
            ecc = nv.nvmlDeviceGetTotalEccErrors(h, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC)
            if ecc:
                result.problems.append(f"GPU {i}: {ecc} uncorrected ECC errors")
        with contextlib.suppress(Exception):
            rows = nv.nvmlDeviceGetRemappedRows(h)
            if rows[2] or rows[3]:  # pending remap / remap failure
                result.problems.append(f"GPU {i}: remapped-row pending or failed")
    return result


def gpu_memory_used_gib() -> list[float]:
    nv = _nvml()
    if nv is None:
        return []
    return [nv.nvmlDeviceGetMemoryInfo(nv.nvmlDeviceGetHandleByIndex(i)).used / 2**30
            for i in range(nv.nvmlDeviceGetCount())]  # fmt: skip


def wait_gpu_memory_back(baseline_gib: list[float], *, slack_gib: float = 0.5, timeout_s: float = 60,
                         read: Callable[[], list[float]] = gpu_memory_used_gib) -> list[str]:  # fmt: skip
    """After an engine stopped: wait until every GPU's used memory is back within `slack_gib` of what it
    was before the start. Returns the GPUs that never came back (empty when clean, or without GPUs)."""
    deadline = time.monotonic() + timeout_s
    while True:
        used = read()
        late = [f"GPU {i}: {u:.1f} GiB used, {b:.1f} GiB before the engine started"
                for i, (u, b) in enumerate(zip(used, baseline_gib, strict=False)) if u > b + slack_gib]  # fmt: skip
        if not late or time.monotonic() > deadline:
            return late
        time.sleep(0.5)


def sample_now() -> dict[str, float]:
    """One telemetry reading: CPU always; SM clock, power, temperature, memory, utilisation, throttle
    reasons of GPU 0 when NVML is there."""
    freq = psutil.cpu_freq()
    s: dict[str, float] = {"cpu_percent": psutil.cpu_percent(interval=None), "load_1m": os.getloadavg()[0]}
    if freq:
        s["cpu_mhz"] = freq.current
    nv = _nvml()
    if nv is not None and nv.nvmlDeviceGetCount():
        h = nv.nvmlDeviceGetHandleByIndex(0)
        with contextlib.suppress(Exception):
            s["sm_clock_mhz"] = nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
            s["power_w"] = nv.nvmlDeviceGetPowerUsage(h) / 1000
            s["temperature_c"] = nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
            s["gpu_memory_used_gib"] = nv.nvmlDeviceGetMemoryInfo(h).used / 2**30
            s["gpu_util_percent"] = nv.nvmlDeviceGetUtilizationRates(h).gpu
            s["throttle_reasons"] = nv.nvmlDeviceGetCurrentClocksEventReasons(h)
    return s


class Telemetry:
    """Samples in a background thread while a point runs; `summary()` gives min/mean/max per reading
    (throttle reasons: the OR of every bit seen)."""

    def __init__(self, *, interval_s: float = 0.5, read: Callable[[], dict[str, float]] = sample_now):
        self.interval_s = interval_s
        self.read = read
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="telemetry", daemon=True)

    def __enter__(self) -> Telemetry:
        psutil.cpu_percent(interval=None)  # primes the counter so the first reading covers an interval
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(self.read())

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"samples": len(self.samples)}
        keys = sorted({k for s in self.samples for k in s})
        for k in keys:
            vals = [s[k] for s in self.samples if k in s]
            if k == "throttle_reasons":
                bits = 0
                for v in vals:
                    bits |= int(v)
                out[k] = bits
            else:
                out[k] = {"min": min(vals), "mean": round(sum(vals) / len(vals), 3), "max": max(vals)}
        return out

