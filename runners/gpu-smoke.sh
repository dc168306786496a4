#!/usr/bin/env bash
# GPU smoke check, for a machine with an NVIDIA GPU where PyTorch and transformers are preinstalled and
# nothing can be downloaded (no vLLM wheels either): `perfci doctor`, then the smoke and startup suites on
# the `transformers` engine (`transformers serve --continuous-batching`), with perfci's tiny model given
# random weights; then the smoke suite again with the GPU clocks locked (`--lock-clocks base`), checking that
# the lock held during the points and was undone. Run records, the store and the doctor output land in $OUT.
#
# Wheels perfci needs that the machine lacks go in .whl/ (made with `pip download` where there is a
# network, see docs/builds.md). transformers serve has no `ignore_eos`, so output lengths are what the model
# generates.
set -euo pipefail
OUT=${OUT:-gpu-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PERFCI_CACHE=${PERFCI_CACHE:-/tmp/perfci-cache} PYTHONUNBUFFERED=1
mkdir -p ~/.cache/huggingface/hub  # transformers serve's /v1/models fails without it
ENGINE_PY=$("$PY" -c 'import sys; print(sys.executable)')
BUILD="transformers:$ENGINE_PY"

"$PY" -m perfci doctor --json | tee "$OUT/doctor.json"
"$PY" -m perfci run --suite smoke --engine "$BUILD" --db "$OUT/gpu.db" --out "$OUT/smoke.json"
"$PY" -m perfci run --suite startup --engine "$BUILD" --db "$OUT/gpu.db" --out "$OUT/startup.json"
"$PY" -m perfci show --db "$OUT/gpu.db"

# Clock locking needs root (or `nvidia-smi -lgc` rights): without them perfci exits 3 having measured
# nothing, and this says so instead of failing the smoke check. With them, the record must show the lock
# verified at the points and undone, and the GPUs must not be left with user-defined clocks (the
# applications-clocks event reason, 0x2, no more set after the run than before it).
clock_reason() {
    "$PY" -c 'import pynvml as n; n.nvmlInit()
print(max(n.nvmlDeviceGetCurrentClocksEventReasons(n.nvmlDeviceGetHandleByIndex(i)) & 2
          for i in range(n.nvmlDeviceGetCount())))' 2>/dev/null || echo unknown
}
before=$(clock_reason)
set +e
"$PY" -m perfci run --suite smoke --engine "$BUILD" --lock-clocks base --db "$OUT/gpu.db" \
    --out "$OUT/smoke-locked.json" >"$OUT/smoke-locked.log" 2>&1
rc=$?
set -e
after=$(clock_reason)
"$PY" - "$OUT" "$rc" "$before" "$after" <<'EOF' | tee "$OUT/clocks.txt"
import json, pathlib, sys
out, rc, before, after = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
print(f"user-defined clocks event reason before the run {before}, after it {after}")
if rc == 3:
    print("clock locking refused (exit 3, nothing measured):", (out / "smoke-locked.log").read_text()[-600:])
    sys.exit(0 if before == after else 1)
record = json.loads((out / "smoke-locked.json").read_text())
lock = record["hardware"]["fingerprint"]["clock_lock"]
print("clock_lock:", json.dumps(lock), "run status:", record["status"], "exit", rc)
for p in record["points"]:
    t = p["telemetry"]
    print(p["workload"], p["load_label"], "sm_clock_mhz", t.get("sm_clock_mhz"),
          "off target", t.get("sm_clock_off_target_mhz"), "reasons", t.get("throttle_reasons"))
ok = lock["verified"] and lock["unlocked"] and rc == 0 and after in (before, "unknown")
print("CLOCK LOCK", "OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
EOF
