#!/usr/bin/env bash
# The inner loop: unit tests only (no Docker, no Pulumi engine, no pyright), stop at the first
# failure. Needs scripts/setup.sh once. Arguments go to pytest (e.g. tests/serving -k drift).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(kaizen_root)"
exec .venv/bin/python -m pytest -p no:cacheprovider -q -x -m "not docker and not pulumi and not slow" "$@"
