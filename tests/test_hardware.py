"""Hardware: CPU fingerprint here; GPU logic through injected readings (NVML is read on GPU runners)."""

import itertools

from perfci.measure import hardware


def test_cpu_fingerprint_and_label():
    fp = hardware.fingerprint()
    assert fp["cpu_cores"] >= 1 and fp["memory_gib"] > 0
    assert fp["label"] == hardware.label(fp)
    if not fp["gpus"]:
        assert fp["label"].startswith(f"cpu-{fp['cpu_cores']}c-")


def test_gpu_labels():
    gpu = {"name": "NVIDIA H100 80GB HBM3", "memory_gib": 79.6, "uuid": "GPU-1"}
    assert hardware.label({"gpus": [gpu]}) == "h100"
    assert hardware.label({"gpus": [gpu] * 8}) == "h100x8"
    assert hardware.label({"gpus": [{**gpu, "name": "NVIDIA H200"}]}) == "h200"
    assert hardware.label({"gpus": [{**gpu, "name": "NVIDIA B200"}]}) == "b200"
    assert hardware.label({"gpus": [{**gpu, "name": "Weird Card 9000"}]}) == "weird-card-9000"
    assert hardware.label({"cpu": "AMD EPYC 7B13 64-Core Processor", "cpu_cores": 2, "gpus": []}) == "cpu-2c-amd-epyc-7b13-64-core"


def test_gpu_memory_must_come_back_after_teardown():
    readings = iter([[30.0], [12.0], [0.4]])
    assert hardware.wait_gpu_memory_back([0.2], timeout_s=5, read=lambda: next(readings)) == []
    stuck = hardware.wait_gpu_memory_back([0.2], timeout_s=0.6, read=lambda: [30.0])
    assert stuck == ["GPU 0: 30.0 GiB used, 0.2 GiB before the engine started"]
    assert hardware.wait_gpu_memory_back([], read=lambda: []) == []  # no GPU


def test_telemetry_summary():
    values = itertools.cycle([{"cpu_percent": 10.0, "throttle_reasons": 4}, {"cpu_percent": 30.0, "throttle_reasons": 1}])
    with hardware.Telemetry(interval_s=0.05, read=lambda: next(values)) as t:
        import time

        time.sleep(0.3)
    s = t.summary()
    assert s["samples"] >= 2
    assert s["cpu_percent"]["min"] == 10.0 and s["cpu_percent"]["max"] == 30.0
    assert s["throttle_reasons"] == 5  # every reason seen, OR-ed


def test_preflight_without_gpu_is_clean():
    if not hardware.fingerprint()["gpus"]:
        assert hardware.preflight().clean
