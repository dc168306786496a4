#!/usr/bin/env bash
# Run by systemd as root before every start of perfci-runner (ExecStartPre=+): forget the last runner, wipe
# its work directory, ask GitHub for a one-hour registration token with the admin token, and register a
# fresh ephemeral runner (one job, then it exits and systemd starts this again) into the runner group
# RUNNER_GROUP of the organization. Only the registration token, never the admin token, reaches the runner
# user, and only for config.sh. runners/SECURITY.md says how that group must be set up.
set -euo pipefail
# shellcheck source=/dev/null
source /etc/perfci-runner/env
cd /opt/actions-runner

rm -rf _work .runner .credentials .credentials_rsaparams
# An organization's runner (https://github.com/ORG) can be put in a runner group restricted to selected
# workflows; a repository's runner cannot, so only an organization URL is accepted.
[[ "$RUNNER_URL" =~ ^https://[^/]+/([A-Za-z0-9][A-Za-z0-9-]*)$ ]] ||
    { echo "RUNNER_URL must be https://HOST/ORG, an organization" >&2; exit 2; }
org="${BASH_REMATCH[1]}"
[ -n "${RUNNER_GROUP:-}" ] || { echo "RUNNER_GROUP is not set in /etc/perfci-runner/env" >&2; exit 2; }
api="${GITHUB_API_URL:-https://api.github.com}"
token="$(curl -fsS -X POST -H "Authorization: Bearer $(cat /etc/perfci-runner/admin-token)" \
    -H "Accept: application/vnd.github+json" "$api/orgs/$org/actions/runners/registration-token" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
runuser -u perfci-runner -- ./config.sh --unattended --ephemeral --replace --disableupdate \
    --url "$RUNNER_URL" --token "$token" --runnergroup "$RUNNER_GROUP" --name "$RUNNER_NAME-$(date +%s)" \
    --labels "$RUNNER_LABELS" --work _work
