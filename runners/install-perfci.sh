#!/usr/bin/env bash
# Install perfci from this checkout the way users get it: build the wheel, install it (not editable) into a
# fresh virtual environment. The wheel carries the suites and dashboards, so nothing is read from the checkout
# afterwards. Used by .github/actions/setup-perfci, runners/setup-runner.sh and tests/test_wheel.py.
#
#   runners/install-perfci.sh VENV [EXTRAS]      e.g. runners/install-perfci.sh /opt/perfci gpu
#
# PYTHON (default python3) makes the venv. uv, put into the venv with pip (perfci depends on it anyway), builds
# the wheel and installs it. uv does not read pip's settings, so each PIP_FIND_LINKS entry is passed on as
# --find-links, as perfci does for engine builds (docs/builds.md).
set -euo pipefail

[ $# -ge 1 ] && [ $# -le 2 ] || { sed -n '6p' "$0" >&2; exit 2; }
VENV="$1" EXTRAS="${2:-}"
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

links=()
for link in ${PIP_FIND_LINKS:-}; do links+=(--find-links "$link"); done

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check uv
dist="$(mktemp -d)"
trap 'rm -rf "$dist"' EXIT
"$VENV/bin/uv" build --quiet --wheel --out-dir "$dist" "${links[@]}" "$ROOT"
wheels=("$dist"/perfci-*.whl)
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" "${links[@]}" \
    "perfci${EXTRAS:+[$EXTRAS]} @ file://${wheels[0]}"
