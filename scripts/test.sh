#!/usr/bin/env bash
# Set up everything (scripts/setup.sh), then run the whole test suite: ruff, pyright, pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PULUMI_BIN=$(bash scripts/setup.sh | tail -1)
export PATH="$PULUMI_BIN:$ROOT/.venv/bin:$PATH"
echo "== ruff"
.venv/bin/ruff check .
echo "== pyright"
.venv/bin/pyright
echo "== pytest"
.venv/bin/python -m pytest -p no:cacheprovider "$@"
