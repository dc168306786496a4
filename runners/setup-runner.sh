#!/usr/bin/env bash
# Turn a bare GPU host into an ephemeral GitHub Actions runner for perfci. Run as root, once:
#
#   sudo runners/setup-runner.sh --url https://github.com/ORG --runner-group perfci-gpu \
#       --admin-token-file ./runner-admin-token
#
# It creates the user `perfci-runner` (no sudo, no docker group), the perfci and Hugging Face caches under
# /var/lib/perfci, installs the Actions runner and perfci, takes the runner label from the GPU fingerprint
# (`perfci doctor`: h100, h200, b200, …), and installs the systemd unit `perfci-runner`, which registers a
# fresh ephemeral runner before every job (runners/register.sh) in the organization's runner group
# --runner-group, which must exist and be limited to perfci's workflows (runners/SECURITY.md). The admin
# token (a GitHub App's, or a fine-grained token, with the organization permission "Self-hosted runners: read
# and write") is copied to a root-only file: the runner user and the jobs never see it. runners/README.md
# walks through it; runners/SECURITY.md says why.
set -euo pipefail

RUNNER_VERSION=2.329.0
RUNNER_SHA256=""   # the checksum GitHub publishes for actions-runner-linux-x64-$RUNNER_VERSION.tar.gz (optional)
URL="" ADMIN_TOKEN_FILE="" LABEL="" NAME="$(hostname -s)" GROUP=""
PYTHON=python3.11
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO_ROOT="$(dirname "$HERE")"

usage() { sed -n '2,15p' "$0"; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --url) URL="$2"; shift 2 ;;
        --runner-group) GROUP="$2"; shift 2 ;;    # perfci-gpu, or perfci-gpu-pr (runners/SECURITY.md)
        --admin-token-file) ADMIN_TOKEN_FILE="$2"; shift 2 ;;
        --label) LABEL="$2"; shift 2 ;;           # override the fingerprint's label
        --name) NAME="$2"; shift 2 ;;
        --runner-version) RUNNER_VERSION="$2"; shift 2 ;;
        --runner-sha256) RUNNER_SHA256="$2"; shift 2 ;;
        --python) PYTHON="$2"; shift 2 ;;
        *) usage ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 2; }
# An organization's runner: only those can be in a runner group restricted to selected workflows.
[[ "$URL" =~ ^https://[^/]+/[A-Za-z0-9][A-Za-z0-9-]*$ ]] || { echo "--url https://github.com/ORG is required" >&2; exit 2; }
[[ "$GROUP" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || { echo "--runner-group NAME is required" >&2; exit 2; }
[ -r "$ADMIN_TOKEN_FILE" ] || { echo "--admin-token-file: cannot read '$ADMIN_TOKEN_FILE'" >&2; exit 2; }

echo "== user and directories"
id perfci-runner >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/perfci/home \
    --shell /usr/sbin/nologin perfci-runner
install -d -o perfci-runner -g perfci-runner -m 0750 /var/lib/perfci /var/lib/perfci/cache /var/lib/perfci/hf \
    /var/lib/perfci/home /opt/actions-runner
install -d -o root -g root -m 0700 /etc/perfci-runner
install -o root -g root -m 0600 "$ADMIN_TOKEN_FILE" /etc/perfci-runner/admin-token

echo "== perfci (for the label and for jobs that want a preinstalled copy)"
# The wheel, not the checkout: /opt/perfci keeps working when the checkout moves or changes.
PYTHON="$PYTHON" "$REPO_ROOT/runners/install-perfci.sh" /opt/perfci gpu
if [ -z "$LABEL" ]; then
    # --force: a busy GPU must not stop the setup; the label is what matters here.
    LABEL="$(/opt/perfci/bin/perfci doctor --json --force | /opt/perfci/bin/python -c \
        'import json, sys; print(json.load(sys.stdin)["fingerprint"]["label"])')"
fi
[[ "$LABEL" =~ ^[a-z0-9][a-z0-9.-]*$ ]] || { echo "bad label '$LABEL'" >&2; exit 1; }
echo "label: $LABEL"
case "$LABEL" in
    *x[0-9]*) echo "note: $LABEL is a multi-GPU host; the workflows target single-GPU labels (h100, h200, b200)." \
                   "See runners/README.md, 'Several GPUs in one host'." >&2 ;;
esac

echo "== the Actions runner $RUNNER_VERSION"
tarball="/tmp/actions-runner-$RUNNER_VERSION.tar.gz"
curl -fsSL -o "$tarball" \
    "https://github.com/actions/runner/releases/download/v$RUNNER_VERSION/actions-runner-linux-x64-$RUNNER_VERSION.tar.gz"
if [ -n "$RUNNER_SHA256" ]; then echo "$RUNNER_SHA256  $tarball" | sha256sum -c -; fi
tar -xzf "$tarball" -C /opt/actions-runner
chown -R perfci-runner:perfci-runner /opt/actions-runner
/opt/actions-runner/bin/installdependencies.sh >/dev/null

echo "== service"
cat > /etc/perfci-runner/env <<ENV
RUNNER_URL=$URL
RUNNER_GROUP=$GROUP
RUNNER_LABELS=$LABEL
RUNNER_NAME=$NAME
ENV
install -o root -g root -m 0755 "$HERE/register.sh" /usr/local/lib/perfci-register.sh
install -o root -g root -m 0644 "$HERE/perfci-runner.service" /etc/systemd/system/perfci-runner.service
systemctl daemon-reload
systemctl enable --now perfci-runner.service
echo "done: ephemeral runner '$NAME' in group $GROUP, labels self-hosted,linux,$LABEL; journalctl -u perfci-runner -f"
