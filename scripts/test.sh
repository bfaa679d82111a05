#!/usr/bin/env bash
# Set up everything (scripts/setup.sh), then lint (scripts/lint.sh: ruff, pyright) and the whole
# pytest suite. What CI runs. Arguments go to pytest.
#   scripts/test.sh --no-setup [ARGS]   skip set-up (already done on this machine)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(kaizen_root)
cd "$ROOT"
if [ "${1:-}" = --no-setup ]; then
    shift
    PULUMI_BIN=$(bash scripts/install-pulumi.sh | tail -1)
else
    PULUMI_BIN=$(bash scripts/setup.sh | tail -1)
fi
export PATH="$PULUMI_BIN:$ROOT/.venv/bin:$PATH"
bash scripts/lint.sh
echo "== pytest"
.venv/bin/python -m pytest -p no:cacheprovider "$@"
