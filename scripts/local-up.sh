#!/usr/bin/env bash
# The main command: the whole loop on this machine with one `pulumi up` of the `local` stack.
#
#   scripts/local-up.sh            install the engine, start Docker, build the base image if needed,
#                                  `pulumi up` the local stack, print the endpoint + one prediction
#   scripts/local-up.sh destroy    `pulumi destroy` the local stack (and `pulumi stack rm`)
#
# State: PULUMI_BACKEND_URL (default file://$HOME/.kaizen/pulumi-state), secrets passphrase
# PULUMI_CONFIG_PASSPHRASE (default "kaizen-local"). Config: stacks/Pulumi.local.yaml.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(kaizen_root)
cd "$ROOT"
STACK=${KAIZEN_LOCAL_STACK:-local}
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=python3

t0=$(date +%s)
pulumi_env
t1=$(date +%s)

if [ "${1:-up}" = destroy ]; then
    pulumi destroy --yes --skip-preview --non-interactive --stack "$STACK"
    pulumi stack rm --yes --preserve-config --non-interactive --stack "$STACK"
    exit 0
fi

bash "$ROOT/scripts/start-docker.sh" >&2
"$PY" -c 'from model_packages.image.base import ensure_bases; from model_packages.image.settings import ImageSettings; ensure_bases(kinds=("runtime", "builder"), settings=ImageSettings.from_env())' >&2
t2=$(date +%s)
pulumi stack select --create "$STACK" --non-interactive >/dev/null
pulumi up --yes --skip-preview --non-interactive --stack "$STACK"
t3=$(date +%s)
url=$(pulumi stack output endpointUrl --stack "$STACK")
echo
echo "endpoint:   $url"
echo "metrics:    $(pulumi stack output metricsUrl --stack "$STACK")"
echo "image:      $(pulumi stack output image --stack "$STACK")"
echo "prediction: POST $url/predict {\"instances\": [[5.1, 3.5, 1.4, 0.2]]}"
"$PY" - "$url" <<'EOF'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/predict", method="POST",
                             data=json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode(),
                             headers={"content-type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as resp:
    print("            ->", resp.read().decode())
EOF
echo "timings: engine $((t1 - t0)) s, docker+base image $((t2 - t1)) s, pulumi up $((t3 - t2)) s"
