#!/usr/bin/env bash
# Before/after A/B of the serving path in one run: the runtime at REV and the working tree serve the
# same package side by side (1 worker each, both pinned to core 1), wrk pinned to core 0 alternates
# between them, ROUNDS x SECONDS per shape; prints one line per case and the medians.
#   bash bench/serving/ab.sh REV [PACKAGE] [ROUNDS] [SECONDS]
# e.g. bash bench/serving/ab.sh 98bf242^ examples/iris-classifier 5 8   (needs wrk; run on a quiet machine)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
ROOT=$(kaizen_root)
REV=${1:?usage: ab.sh REV [PACKAGE] [ROUNDS] [SECONDS]}
PKG=$(realpath "${2:-$ROOT/examples/iris-classifier}")
ROUNDS=${3:-5} SECONDS_PER=${4:-8}
PY="$ROOT/.venv/bin/python"
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; git -C "$ROOT" worktree remove --force "$WORK/old" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
git -C "$ROOT" worktree add -q --detach "$WORK/old" "$REV"
cat >"$WORK/json.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
wrk.headers["Content-Type"] = "application/json"
LUA
cat >"$WORK/csv.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "5.1,3.5,1.4,0.2\n"
wrk.headers["Content-Type"] = "text/csv"
LUA
start() { # source-dir port
    (cd "$1" && exec env KAIZEN_MODEL_DIR="$PKG" KAIZEN_HOST=127.0.0.1 KAIZEN_PORT="$2" KAIZEN_WORKERS=1 \
        PYTHONPATH="$1" taskset -c 1 "$PY" -m model_packages.serving serve >"$WORK/server-$2.log" 2>&1) &
    pids+=($!)
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$2/ping" >/dev/null && return; sleep 0.1; done
    echo "server on $2 did not start: $(tail -3 "$WORK/server-$2.log")" >&2; exit 1
}
OLD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
NEW_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start "$WORK/old" "$OLD_PORT"
start "$ROOT" "$NEW_PORT"
for round in $(seq "$ROUNDS"); do
    for side in "before:$OLD_PORT" "after:$NEW_PORT"; do
        for shape in json csv; do
            out=$(taskset -c 0 wrk -t1 -c16 -d"${SECONDS_PER}s" -s "$WORK/$shape.lua" "http://127.0.0.1:${side##*:}/invocations")
            rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
            bad=$(echo "$out" | awk '/Non-2xx/ {print $5}')
            echo "$round ${side%%:*} $shape $rate non2xx=${bad:-0}" | tee -a "$WORK/results"
        done
    done
done
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for side in ("before", "after"):
    for shape in ("json", "csv"):
        rates = [float(r[3]) for r in rows if r[1] == side and r[2] == shape]
        print(f"{side:6} {shape:4} median {statistics.median(rates):8.0f} req/s  (min {min(rates):.0f}, max {max(rates):.0f})")
PY
