#!/usr/bin/env bash
# Run by systemd as root before every start of perfci-runner (ExecStartPre=+): forget the last runner, wipe
# its work directory, ask GitHub for a one-hour registration token with the admin token, and register a
# fresh ephemeral runner (one job, then it exits and systemd starts this again). Only the registration
# token, never the admin token, reaches the runner user, and only for config.sh.
set -euo pipefail
# shellcheck source=/dev/null
source /etc/perfci-runner/env
cd /opt/actions-runner

rm -rf _work .runner .credentials .credentials_rsaparams
repo="${RUNNER_URL#https://github.com/}"
api="${GITHUB_API_URL:-https://api.github.com}"
token="$(curl -fsS -X POST -H "Authorization: Bearer $(cat /etc/perfci-runner/admin-token)" \
    -H "Accept: application/vnd.github+json" "$api/repos/$repo/actions/runners/registration-token" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
runuser -u perfci-runner -- ./config.sh --unattended --ephemeral --replace --disableupdate \
    --url "$RUNNER_URL" --token "$token" --name "$RUNNER_NAME-$(date +%s)" --labels "$RUNNER_LABELS" \
    --work _work
