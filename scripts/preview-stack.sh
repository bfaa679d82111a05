#!/usr/bin/env bash
# Preview stacks on the local target: the same mechanics a pull request uses, one command each.
#
#   scripts/preview-stack.sh up N        create stack pr-N from stacks/templates/Pulumi.pr.local.yaml
#                                        (ports derived from N), `pulumi up`, print the outputs
#   scripts/preview-stack.sh preview N   `pulumi preview --diff` of pr-N (creating it if needed)
#   scripts/preview-stack.sh destroy N   `pulumi destroy`, `pulumi stack rm`, remove its config file
#
# Ports of pr-N: base = 20000 + (N mod 400) * 10; registry base+1, endpoint base+2,
# backends base+3/base+4, Prometheus base+5 (so several previews can run side by side).
# Env: PULUMI_BACKEND_URL (default file://$HOME/.kaizen/pulumi-state), PULUMI_CONFIG_PASSPHRASE
# (default "kaizen-local"), KAIZEN_PREVIEW_TEMPLATE (another template file).
set -euo pipefail

usage() { echo "usage: $0 up|preview|destroy N" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
n=$2
[[ "$n" =~ ^[0-9]+$ ]] || { echo "N must be a number (the pull request), got '$n'" >&2; exit 2; }

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(kaizen_root)
cd "$ROOT"
stack="pr-$n"
template=${KAIZEN_PREVIEW_TEMPLATE:-$ROOT/stacks/templates/Pulumi.pr.local.yaml}
config="$ROOT/stacks/Pulumi.$stack.yaml"

pulumi_env

ensure_stack() {
    if [ ! -f "$config" ]; then
        base=$((20000 + (n % 400) * 10))
        sed -e "s/__REGISTRY_PORT__/$((base + 1))/" -e "s/__ENDPOINT_PORT__/$((base + 2))/" \
            -e "s/__BACKEND_PORT_A__/$((base + 3))/" -e "s/__BACKEND_PORT_B__/$((base + 4))/" \
            -e "s/__PROMETHEUS_PORT__/$((base + 5))/" "$template" >"$config"
        echo "wrote $config" >&2
    fi
    pulumi stack select --create "$stack" --non-interactive >/dev/null
}

case "$action" in
up)
    ensure_stack
    pulumi up --yes --skip-preview --non-interactive --stack "$stack"
    pulumi stack output --json --stack "$stack"
    ;;
preview)
    ensure_stack
    pulumi preview --diff --non-interactive --stack "$stack"
    ;;
destroy)
    if pulumi stack select --stack "$stack" --non-interactive >/dev/null 2>&1; then
        pulumi destroy --yes --skip-preview --non-interactive --stack "$stack"
        pulumi stack rm --yes --non-interactive --stack "$stack"
    fi
    rm -f "$config"
    ;;
*) usage ;;
esac
