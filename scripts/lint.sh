#!/usr/bin/env bash
# ruff + pyright over the whole project, no set-up (run scripts/setup.sh once first).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(kaizen_root)"
echo "== ruff"
.venv/bin/ruff check .
echo "== pyright"
.venv/bin/pyright "$@"
