#!/usr/bin/env bash
# Preview stacks on the local target: the same commands a pull request's workflow runs.
#
#   scripts/preview-stack.sh up N        create stack pr-N from stacks/templates/Pulumi.pr.local.yaml
#                                        (ports derived from N), `pulumi up`, print the outputs
#   scripts/preview-stack.sh destroy N   `pulumi destroy`, `pulumi stack rm`, remove its config file
#                                        (succeeds when there is no such stack)
#
# Thin wrapper over `kaizen ci preview up|destroy --pr N --target local`
# (model_packages/ci/stacks.py holds the port formula and the mechanics).
# Env: PULUMI_BACKEND_URL (default file://$HOME/.kaizen/pulumi-state), PULUMI_CONFIG_PASSPHRASE
# (default "kaizen-local").
set -euo pipefail

usage() { echo "usage: $0 up|destroy N" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
n=$2
[[ "$n" =~ ^[0-9]+$ ]] || { echo "N must be a number (the pull request), got '$n'" >&2; exit 2; }
case "$action" in up | destroy) ;; *) usage ;; esac

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(kaizen_root)
cd "$ROOT"
pulumi_env
exec "$ROOT/.venv/bin/kaizen" ci preview "$action" --pr "$n" --target local --project-dir "$ROOT"
