#!/usr/bin/env bash
# The main job on a fresh machine: set everything up, then `pulumi up` the local stack and print the
# endpoint and one real prediction (scripts/local-up.sh). `bash scripts/local-up.sh destroy` removes it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh" >/dev/null
exec bash "$ROOT/scripts/local-up.sh" "$@"
