#!/usr/bin/env bash
# GPU smoke check, for a machine with an NVIDIA GPU where PyTorch and transformers are preinstalled and
# nothing can be downloaded (no vLLM wheels either): `perfci doctor`, then the smoke and startup suites on
# the `transformers` engine (`transformers serve --continuous-batching`), with perfci's tiny model given
# random weights. Run records, the store and the doctor output land in $OUT.
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
