#!/usr/bin/env bash
# sigstore-local.sh: a private Sigstore instance on 127.0.0.1, so keyless signing (sigstore-python 4.5.1)
# can be tested without reaching sigstore.dev.
#
#   build        go install the pinned servers into ~/.cache/kaizen/sigstore/bin (skips those already
#                built from the same pin; ~2m40s on 2 cores with an empty Go module cache)
#   start DIR    make keys in DIR, start every server on free 127.0.0.1 ports (~2 s), write
#                DIR/trust_config.json (a ClientTrustConfig: trusted root + signing config),
#                DIR/env (URLs, TOKEN_CMD) and DIR/pids; logs in DIR/*.log
#   stop DIR     kill exactly the PIDs in DIR/pids (SIGTERM, then SIGKILL after 10 s)
#   check DIR    sign an in-toto statement against DIR, verify it, and check that a tampered bundle
#                and a wrong identity fail (scripts/sigstore_local_check.py)
# The CLI works too: source DIR/env, then
#   sigstore --trust-config DIR/trust_config.json sign --identity-token "$(curl -fsS $OIDC_URL/token)" FILE
#   sigstore --trust-config DIR/trust_config.json verify identity --cert-identity kaizen-ci@example.com \
#     --cert-oidc-issuer "$OIDC_ISSUER" FILE
#
# What runs and why:
#   oidc_issuer.py     stand-in for a CI identity provider (GitHub's token service): discovery + JWKS,
#                      mints RS256 ID tokens (aud "sigstore") via GET $OIDC_URL/token?sub=EMAIL
#   fulcio             issues the short-lived signing certificate for such a token (ephemeral in-memory
#                      CA; its root is fetched from /api/v2/trustBundle into the trusted root). Issuer type
#                      "email": the subject is the certificate's SAN, the issuer URL its OIDC issuer
#   tesseract posix    the CT log Fulcio gets its SCT from. Not optional: sigstore-python needs a CT key in
#                      the trusted root and verifies the embedded SCT when signing and when verifying
#   timestamp-server   RFC 3161 TSA (in-memory signer and chain): Rekor v2 entries carry no signed
#                      integration time, so a verifier needs a signed timestamp to check the certificate at
#   rekor-server posix rekor-tiles v2 transparency log; gives each bundle an inclusion proof + checkpoint
# Every listener is on 127.0.0.1. Fulcio and the TSA also open metrics listeners on all interfaces
# (no flag for the host; the TSA's is a fixed :2112), so those two run in private network namespaces
# (`unshare -n`: needs root) and are reached through Unix sockets by scripts/sock_relay.py pairs.
# Pins need Go >= 1.26 (fulcio v1.8.8's go.mod). Fulcio's one-port (duplex) mode panics in v1.8.8,
# hence separate HTTP and gRPC ports.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${KAIZEN_SIGSTORE_BIN:-$HOME/.cache/kaizen/sigstore/bin}"
PY="${PYTHON:-$HERE/../.venv/bin/python}"

# name=module/path@version
PINS=(
  "fulcio=github.com/sigstore/fulcio@v1.8.8"
  "tesseract-posix=github.com/transparency-dev/tesseract/cmd/tesseract/posix@v0.1.1"
  "timestamp-server=github.com/sigstore/timestamp-authority/v2/cmd/timestamp-server@v2.1.3"
  "rekor-server-posix=github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix@v2.3.0"
)

cmd_build() {
  mkdir -p "$BIN"
  local pin name pkg tmp
  for pin in "${PINS[@]}"; do
    name="${pin%%=*}"; pkg="${pin#*=}"
    # $BIN/NAME.pin records what NAME was built from, so a changed pin rebuilds it
    if [[ -x "$BIN/$name" && "$(cat "$BIN/$name.pin" 2>/dev/null)" == "$pkg" ]]; then
      echo "have $name ($pkg)"; continue
    fi
    echo "building $name from $pkg"
    tmp="$(mktemp -d)"
    GOBIN="$tmp" GOFLAGS="-trimpath -buildvcs=false" nice -n 10 go install "$pkg"
    mv "$tmp"/* "$BIN/$name"
    rmdir "$tmp"
    echo "$pkg" >"$BIN/$name.pin"
  done
}

# Start NAME: run "$@" in the background with output to DIR/NAME.log, and record its PID.
spawn() {
  local name="$1"; shift
  "$@" >"$D/$name.log" 2>&1 &
  echo $! >>"$D/pids"
}

# wait_until WHAT LOG CHECK...: run CHECK every 0.2 s until it succeeds (up to 60 s, or until the
# server started last has exited); on failure show the last lines of that server's LOG.
wait_until() {
  local what="$1" log="$2"
  shift 2
  for _ in $(seq 1 300); do
    if "$@" 2>/dev/null; then return 0; fi
    kill -0 "$(tail -1 "$D/pids")" 2>/dev/null || break
    sleep 0.2
  done
  echo "$what did not come up; last lines of $log:" >&2
  tail -20 "$log" >&2
  return 1
}

# Wait until URL answers 2xx.
wait_http() { wait_until "$1" "$2" curl -fsS -o /dev/null "$1"; }

# Wait until 127.0.0.1:PORT accepts connections.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1"); }
wait_port() { wait_until "port $1" "$2" port_open "$1"; }

# netns_spawn NAME "EXPORTS" "IMPORTS" CMD...: run CMD in a private network namespace (only its own
# lo), so listeners it opens on all interfaces (fixed metrics ports) are neither exposed nor clash.
# EXPORTS: ports CMD serves, made reachable on the host's 127.0.0.1 at the same number; IMPORTS: host
# 127.0.0.1 ports CMD connects to, made reachable inside at the same number. Each crosses through a
# Unix socket in DIR by a pair of sock_relay.py; every relay's PID goes to DIR/pids.
netns_spawn() {
  local name="$1" exports="$2" imports="$3" port inner="ip link set lo up" sock
  local relay=("$PY" "$HERE/sock_relay.py") q
  q="$(printf '%q ' "${relay[@]}")"
  shift 3
  for port in $exports; do
    sock="$D/$name-out-$port.sock"; rm -f "$sock"
    inner+=" && { $q$(printf %q "unix:$sock") tcp:127.0.0.1:$port & echo \$! >>$(printf %q "$D/pids"); }"
    spawn "$name-relay-$port" "${relay[@]}" "tcp:127.0.0.1:$port" "unix:$sock"
  done
  for port in $imports; do
    sock="$D/$name-in-$port.sock"; rm -f "$sock"
    spawn "$name-relay-$port" "${relay[@]}" "unix:$sock" "tcp:127.0.0.1:$port"
    inner+=" && { ${q}tcp:127.0.0.1:$port $(printf %q "unix:$sock") & echo \$! >>$(printf %q "$D/pids"); }"
    inner+=" && until (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.1; done"
  done
  inner+=" && exec$(printf ' %q' "$@")"
  spawn "$name" unshare -n bash -c "$inner"
}

setup() { "$PY" "$HERE/sigstore_local_setup.py" "$@"; }

cmd_start() {
  D="$(mkdir -p "$1" && cd "$1" && pwd)"
  local t0=$SECONDS name
  for name in fulcio tesseract-posix timestamp-server rekor-server-posix; do
    [[ -x "$BIN/$name" ]] || { echo "missing $BIN/$name: run $0 build" >&2; exit 1; }
  done
  if [[ -s "$D/pids" ]]; then echo "$D/pids exists: run $0 stop $D first" >&2; exit 1; fi
  : >"$D/pids"
  trap 'echo "start failed; stopping what started" >&2; cmd_stop "$D"' ERR

  read -r P_OIDC P_FULCIO P_FULCIO_GRPC P_FULCIO_METRICS P_CT P_TSA P_REKOR P_REKOR_GRPC P_REKOR_METRICS \
    < <(setup ports 9)
  local OIDC_URL="http://127.0.0.1:$P_OIDC" FULCIO_URL="http://127.0.0.1:$P_FULCIO"
  local CT_URL="http://127.0.0.1:$P_CT" TSA_URL="http://127.0.0.1:$P_TSA" REKOR_URL="http://127.0.0.1:$P_REKOR"
  cat >"$D/env" <<ENV
OIDC_URL=$OIDC_URL
OIDC_ISSUER=$OIDC_URL
FULCIO_URL=$FULCIO_URL
CT_URL=$CT_URL
TSA_URL=$TSA_URL
REKOR_URL=$REKOR_URL
SIGSTORE_TRUST_CONFIG=$D/trust_config.json
# an ID token for SUBJECT (an email; default kaizen-ci@example.com): curl -fsS "\$OIDC_URL/token?sub=SUBJECT"
TOKEN_CMD='curl -fsS $OIDC_URL/token'
ENV
  setup keys "$D"
  mkdir -p "$D/ct" "$D/rekor"

  # (1) OIDC issuer
  spawn oidc "$PY" "$HERE/oidc_issuer.py" --port "$P_OIDC" --key "$D/oidc.key"
  wait_http "$OIDC_URL/.well-known/openid-configuration" "$D/oidc.log"

  # (2) Fulcio: separate HTTP and gRPC ports (v1.8.8's one-port "duplex" mode panics registering
  # metrics twice); ephemeral CA, trusts only our issuer (type email), SCTs from the CT log below
  cat >"$D/fulcio.json" <<CFG
{"OIDCIssuers": {"$OIDC_URL": {"IssuerURL": "$OIDC_URL", "ClientID": "sigstore", "Type": "email"}}}
CFG
  # It serves metrics on all interfaces, so it too runs in its own network namespace.
  netns_spawn fulcio "$P_FULCIO" "$P_OIDC $P_CT" "$BIN/fulcio" serve --ca ephemeralca --config-path "$D/fulcio.json" \
    --host 127.0.0.1 --port "$P_FULCIO" --grpc-host 127.0.0.1 --grpc-port "$P_FULCIO_GRPC" \
    --metrics-port "$P_FULCIO_METRICS" --legacy-unix-domain-socket "$D/fulcio-legacy.sock" \
    --ct-log-url "$CT_URL" --log_type prod
  wait_http "$FULCIO_URL/api/v2/trustBundle" "$D/fulcio.log"
  curl -fsS "$FULCIO_URL/api/v2/trustBundle" | "$PY" -c '
import json, sys
for chain in json.load(sys.stdin)["chains"]:
    print("".join(chain["certificates"]), end="")' >"$D/fulcio-chain.pem"

  # (3) CT log (TesseraCT, POSIX storage), accepting chains to Fulcio's CA
  spawn ct "$BIN/tesseract-posix" --http_endpoint "127.0.0.1:$P_CT" --origin kaizen-local-ct \
    --storage_dir "$D/ct" --private_key "$D/ct.key" --roots_pem_file "$D/fulcio-chain.pem" \
    --checkpoint_interval 500ms
  wait_http "$CT_URL/ct/v1/get-roots" "$D/ct.log"

  # (5) timestamp authority (in-memory signer and chain; no NTP: there is no network). v2.1.3 always
  # serves metrics on *:2112, so it runs in a private network namespace (netns_spawn)
  netns_spawn tsa "$P_TSA" "" "$BIN/timestamp-server" serve --host 127.0.0.1 --port "$P_TSA" \
    --timestamp-signer memory --disable-ntp-monitoring --log-type prod
  wait_http "$TSA_URL/api/v1/timestamp/certchain" "$D/tsa.log"
  curl -fsS "$TSA_URL/api/v1/timestamp/certchain" >"$D/tsa-chain.pem"

  # (4) Rekor v2 (rekor-tiles, POSIX storage)
  spawn rekor "$BIN/rekor-server-posix" serve --storage-dir "$D/rekor" --signer-filepath "$D/rekor.key" \
    --hostname "127.0.0.1:$P_REKOR" --http-address 127.0.0.1 --http-port "$P_REKOR" \
    --grpc-address 127.0.0.1 --grpc-port "$P_REKOR_GRPC" --http-metrics-port "$P_REKOR_METRICS" \
    --checkpoint-interval 500ms  # default 10 s: each signing waits for a checkpoint to prove inclusion
  wait_port "$P_REKOR" "$D/rekor.log"

  setup trust-config "$D"
  trap - ERR
  echo "started in $((SECONDS - t0)) s; trust config: $D/trust_config.json; env: $D/env"
  cat "$D/env"
}

cmd_stop() {
  local d="$1" pid pids=()
  [[ -f "$d/pids" ]] || { echo "no $d/pids" >&2; return 0; }
  while read -r pid; do [[ -n "$pid" ]] && pids+=("$pid"); done <"$d/pids"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # the Go servers shut down gracefully; give them 10 s, then SIGKILL those PIDs that remain
  for _ in $(seq 1 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -f "$d/pids"
}

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start "${2:?usage: $0 start DIR}" ;;
  stop) cmd_stop "${2:?usage: $0 stop DIR}" ;;
  check) "$PY" "$HERE/sigstore_local_check.py" "${2:?usage: $0 check DIR}" ;;
  *) echo "usage: $0 build|start DIR|stop DIR|check DIR" >&2; exit 2 ;;
esac
