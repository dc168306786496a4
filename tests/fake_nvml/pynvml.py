"""A fake `pynvml` (nvidia-ml-py) for tests: GPUs whose state lives in a JSON file ($FAKE_NVML_STATE), so that
a perfci process started by a test and the test itself see the same GPUs. Put this directory first on
sys.path (or PYTHONPATH) to use it.

State keys: gpus (list of {name, uuid, base_mhz, max_mhz, idle_mhz, reached_mhz, locked, persistence}),
refuse (function name -> NVML error code, for every GPU or, inside a GPU, for that one), calls (every setter call, in order).
"""

import json
import os

NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_UNKNOWN = 999
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_TEMPERATURE_GPU = 0
NVML_FEATURE_ENABLED = 1
NVML_FEATURE_DISABLED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
_MESSAGES = {3: "Not Supported", 4: "Insufficient Permissions", 999: "Unknown Error"}


class NVMLError(Exception):
    def __init__(self, value):
        super().__init__(value)
        self.value = value

    def __str__(self):
        return _MESSAGES.get(self.value, f"NVML error {self.value}")


def _load():
    with open(os.environ["FAKE_NVML_STATE"]) as f:
        return json.load(f)


def _save(state):
    tmp = os.environ["FAKE_NVML_STATE"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, os.environ["FAKE_NVML_STATE"])


def _gpu(handle):
    state = _load()
    return state, state["gpus"][handle]


def _refused(state, name, gpu=None):
    code = state.get("refuse", {}).get(name) or (gpu or {}).get("refuse", {}).get(name)
    if code is not None:
        raise NVMLError(code)


class _Memory:
    total = 141 * 2**30
    used = 0


class _Util:
    gpu = 50


def nvmlInit():
    _load()


def nvmlSystemGetDriverVersion():
    return "570.86.15"


def nvmlSystemGetCudaDriverVersion_v2():
    return 12080


def nvmlDeviceGetCount():
    return len(_load()["gpus"])


def nvmlDeviceGetHandleByIndex(i):
    return i


def nvmlDeviceGetName(h):
    return _gpu(h)[1]["name"]


def nvmlDeviceGetUUID(h):
    return _gpu(h)[1]["uuid"]


def nvmlDeviceGetMemoryInfo(h):
    return _Memory()


def nvmlDeviceGetComputeRunningProcesses(h):
    return []


def nvmlDeviceGetTotalEccErrors(h, kind, counter):
    return 0


def nvmlDeviceGetRemappedRows(h):
    return (0, 0, 0, 0)


def nvmlDeviceGetPowerUsage(h):
    return 350_000


def nvmlDeviceGetTemperature(h, sensor):
    return 60


def nvmlDeviceGetUtilizationRates(h):
    return _Util()


def nvmlDeviceGetCurrentClocksEventReasons(h):
    return 0x2 if _gpu(h)[1]["locked"] else 0


def nvmlDeviceGetClockInfo(h, clock):
    gpu = _gpu(h)[1]
    return gpu["reached_mhz"] if gpu["locked"] else gpu["idle_mhz"]


def nvmlDeviceGetMaxClockInfo(h, clock):
    return _gpu(h)[1]["max_mhz"]


def nvmlDeviceGetDefaultApplicationsClock(h, clock):
    return _gpu(h)[1]["base_mhz"]


def nvmlDeviceGetPersistenceMode(h):
    state, gpu = _gpu(h)
    _refused(state, "nvmlDeviceGetPersistenceMode", gpu)
    return NVML_FEATURE_ENABLED if gpu["persistence"] else NVML_FEATURE_DISABLED


def nvmlDeviceSetGpuLockedClocks(h, low, high):
    state, gpu = _gpu(h)
    _refused(state, "nvmlDeviceSetGpuLockedClocks", gpu)
    gpu["locked"] = [low, high]
    # A locked GPU runs at its lock unless the test made it throttle (reached_mhz set below the lock).
    gpu["reached_mhz"] = min(gpu.get("throttled_mhz") or high, high)
    state.setdefault("calls", []).append(["lock", h, low, high])
    _save(state)


def nvmlDeviceResetGpuLockedClocks(h):
    state, gpu = _gpu(h)
    _refused(state, "nvmlDeviceResetGpuLockedClocks", gpu)
    gpu["locked"] = None
    state.setdefault("calls", []).append(["reset", h])
    _save(state)
