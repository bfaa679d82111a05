#!/usr/bin/env bash
# Start Debian's docker-registry on 127.0.0.1:PORT in the background with the project's one
# registry config (model_packages/image/localregistry.py; never the package's default config),
# storage under KAIZEN_REGISTRY_DIR. Idempotent: returns when a registry already answers there.
# Usage: scripts/start-registry.sh [PORT]   (default 5000; env KAIZEN_REGISTRY_DIR, _PIDFILE)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(kaizen_root)
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=python3

PORT=${1:-${KAIZEN_REGISTRY_PORT:-5000}}
DIR=${KAIZEN_REGISTRY_DIR:-/tmp/kaizen-registry-$PORT}
PIDFILE=${KAIZEN_REGISTRY_PIDFILE:-$DIR/registry.pid}

answers() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v2/" 2>/dev/null | grep -qE '^(200|401)$'; }

if answers; then
    echo "registry already answering on 127.0.0.1:$PORT"
    exit 0
fi
mkdir -p "$DIR"
cd "$ROOT"
nohup "$PY" -m model_packages.image.localregistry --port "$PORT" --dir "$DIR" --pidfile "$PIDFILE" \
    >"$DIR/supervisor.log" 2>&1 &
supervisor=$!
for _ in $(seq 1 200); do
    if answers; then
        echo "registry on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), storage $DIR/storage)"
        exit 0
    fi
    kill -0 "$supervisor" 2>/dev/null || { tail -20 "$DIR/supervisor.log" >&2; exit 1; }
    sleep 0.1
done
echo "registry did not answer on 127.0.0.1:$PORT; see $DIR/supervisor.log" >&2
exit 1
