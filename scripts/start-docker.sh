#!/usr/bin/env bash
# Start a Docker engine without a bridge network (this machine only reaches 127.0.0.0/8).
# Idempotent: returns at once when `docker info` already answers.
# Env: KAIZEN_DOCKERD_PIDFILE (default /tmp/kaizen-dockerd.pid), KAIZEN_DOCKERD_LOG
# (default /tmp/kaizen-dockerd.log), KAIZEN_DOCKERD_WAIT seconds (default 60).
set -euo pipefail

DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker)
PIDFILE=${KAIZEN_DOCKERD_PIDFILE:-/tmp/kaizen-dockerd.pid}
LOG=${KAIZEN_DOCKERD_LOG:-/tmp/kaizen-dockerd.log}
WAIT=${KAIZEN_DOCKERD_WAIT:-60}

if "$DOCKER" info >/dev/null 2>&1; then
    echo "docker engine already answering"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    echo "dockerd not found: apt-get install -y docker.io" >&2
    exit 1
fi

# A dockerd we started earlier may still be starting up.
if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "dockerd (pid $(cat "$PIDFILE")) is starting; waiting"
else
    nohup dockerd --bridge=none --iptables=false --ip-forward=false >"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
    echo "started dockerd pid $(cat "$PIDFILE"), log $LOG"
fi

for _ in $(seq 1 "$((WAIT * 4))"); do
    if "$DOCKER" info >/dev/null 2>&1; then
        echo "docker engine ready"
        exit 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        echo "dockerd exited; last log lines:" >&2
        tail -20 "$LOG" >&2
        exit 1
    fi
    sleep 0.25
done
echo "docker engine not ready after ${WAIT}s; see $LOG" >&2
exit 1
