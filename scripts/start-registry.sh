#!/usr/bin/env bash
# Start Debian's docker-registry on 127.0.0.1:PORT with its own config (never the package's
# default config), storage under a temporary directory. Idempotent: returns when the
# registry already answers on that port.
# Usage: scripts/start-registry.sh [PORT]   (default 5000; env KAIZEN_REGISTRY_DIR, _PIDFILE)
set -euo pipefail

PORT=${1:-${KAIZEN_REGISTRY_PORT:-5000}}
DIR=${KAIZEN_REGISTRY_DIR:-/tmp/kaizen-registry-$PORT}
PIDFILE=${KAIZEN_REGISTRY_PIDFILE:-$DIR/registry.pid}

answers() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v2/" 2>/dev/null | grep -qE '^(200|401)$'; }

if answers; then
    echo "registry already answering on 127.0.0.1:$PORT"
    exit 0
fi
command -v docker-registry >/dev/null || { echo "apt-get install -y docker-registry" >&2; exit 1; }

mkdir -p "$DIR/storage"
cat >"$DIR/config.yml" <<CONF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/storage
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$PORT
  headers:
    X-Content-Type-Options: [nosniff]
CONF

nohup docker-registry serve "$DIR/config.yml" >"$DIR/registry.log" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 1 100); do
    if answers; then
        echo "registry on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), storage $DIR/storage)"
        exit 0
    fi
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { tail -20 "$DIR/registry.log" >&2; exit 1; }
    sleep 0.1
done
echo "registry did not answer on 127.0.0.1:$PORT; see $DIR/registry.log" >&2
exit 1
