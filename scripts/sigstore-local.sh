#!/usr/bin/env bash
# sigstore-local.sh: a private Sigstore instance on 127.0.0.1 for testing keyless signing offline.
#
#   build        go install the servers (pinned) into ~/.cache/kaizen/sigstore/bin (skips those present)
#   start DIR    make keys/CA in DIR, start the servers on free 127.0.0.1 ports, write
#                DIR/trust_config.json (a sigstore ClientTrustConfig), DIR/env and DIR/pids
#   stop DIR     kill exactly the PIDs in DIR/pids
#   check DIR    sign an in-toto statement with sigstore-python against DIR, verify it, and
#                check that a tampered bundle fails (scripts/sigstore_local_check.py)
#
# What runs and why:
#   oidc_issuer.py   stand-in for a CI identity provider (GitHub's token service): discovery + JWKS,
#                    mints ID tokens (aud "sigstore") for a subject via GET /token?sub=...
#   fulcio           issues short-lived signing certificates for those tokens (file CA made here)
#   tesseract posix  a static CT log: Fulcio embeds its SCTs, which sigstore-python verifies
#   timestamp-server an RFC 3161 TSA: Rekor v2 entries carry no integrated time, so bundles need one
#   rekor-server posix (rekor-tiles v2) the transparency log; returns inclusion proofs for bundles
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
    if [[ -x "$BIN/$name" ]]; then echo "have $name"; continue; fi
    echo "building $name from $pkg"
    tmp="$(mktemp -d)"
    GOBIN="$tmp" GOFLAGS="-trimpath -buildvcs=false" nice -n 10 go install "$pkg"
    mv "$tmp"/* "$BIN/$name"
    rmdir "$tmp"
  done
}

# Start NAME: run "$@" in the background with output to DIR/NAME.log, and record its PID.
spawn() {
  local name="$1"; shift
  "$@" >"$D/$name.log" 2>&1 &
  echo $! >>"$D/pids"
}

# Wait until URL answers 2xx (up to 60 s); on failure show the log of the server that owns it.
wait_http() {
  local url="$1" log="$2" i
  for i in $(seq 1 300); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for $url; last lines of $log:" >&2
  tail -20 "$log" >&2
  return 1
}

# Wait until 127.0.0.1:PORT accepts connections (up to 60 s).
wait_port() {
  local port="$1" log="$2" i
  for i in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for port $port; last lines of $log:" >&2
  tail -20 "$log" >&2
  return 1
}

cmd_start() {
  D="$(mkdir -p "$1" && cd "$1" && pwd)"
  local t0=$SECONDS setup="$PY $HERE/sigstore_local_setup.py" name
  for name in fulcio tesseract-posix timestamp-server rekor-server-posix; do
    [[ -x "$BIN/$name" ]] || { echo "missing $BIN/$name: run $0 build" >&2; exit 1; }
  done
  if [[ -s "$D/pids" ]]; then echo "$D/pids exists: run $0 stop $D first" >&2; exit 1; fi
  : >"$D/pids"
  trap 'echo "start failed; stopping what started" >&2; cmd_stop "$D"' ERR

  read -r P_OIDC P_FULCIO P_FULCIO_METRICS P_CT P_TSA P_REKOR P_REKOR_GRPC P_REKOR_METRICS \
    < <($setup ports 8)
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
  $setup keys "$D"
  mkdir -p "$D/ct" "$D/rekor"

  # (1) OIDC issuer
  spawn oidc "$PY" "$HERE/oidc_issuer.py" --port "$P_OIDC" --key "$D/oidc.key"
  wait_http "$OIDC_URL/.well-known/openid-configuration" "$D/oidc.log"

  # (2) Fulcio: ephemeral CA, trusts only our issuer (type email), SCTs from the CT log below
  cat >"$D/fulcio.json" <<CFG
{"OIDCIssuers": {"$OIDC_URL": {"IssuerURL": "$OIDC_URL", "ClientID": "sigstore", "Type": "email"}}}
CFG
  spawn fulcio "$BIN/fulcio" serve --ca ephemeralca --config-path "$D/fulcio.json" \
    --host 127.0.0.1 --port "$P_FULCIO" --grpc-host 127.0.0.1 --grpc-port "$P_FULCIO" \
    --metrics-port "$P_FULCIO_METRICS" --legacy-unix-domain-socket "$D/fulcio-legacy.sock" \
    --ct-log-url "$CT_URL" --log_type prod
  wait_http "$FULCIO_URL/api/v2/trustBundle" "$D/fulcio.log"
  curl -fsS "$FULCIO_URL/api/v2/trustBundle" | "$PY" -c '
import json, sys
for chain in json.load(sys.stdin)["chains"]:
    print("".join(chain["certificates"]), end="")' >"$D/fulcio-chain.pem"

  # (3) CT log (TesseraCT, POSIX storage), accepting chains to Fulcio's CA
  spawn ct "$BIN/tesseract-posix" --http_endpoint "127.0.0.1:$P_CT" --origin "127.0.0.1:$P_CT" \
    --storage_dir "$D/ct" --private_key "$D/ct.key" --roots_pem_file "$D/fulcio-chain.pem"
  wait_http "$CT_URL/ct/v1/get-roots" "$D/ct.log"

  # (5) timestamp authority (in-memory signer and chain; no NTP: there is no network)
  spawn tsa "$BIN/timestamp-server" serve --host 127.0.0.1 --port "$P_TSA" --timestamp-signer memory \
    --disable-ntp-monitoring --log-type prod
  wait_http "$TSA_URL/api/v1/timestamp/certchain" "$D/tsa.log"
  curl -fsS "$TSA_URL/api/v1/timestamp/certchain" >"$D/tsa-chain.pem"

  # (4) Rekor v2 (rekor-tiles, POSIX storage)
  spawn rekor "$BIN/rekor-server-posix" serve --storage-dir "$D/rekor" --signer-filepath "$D/rekor.key" \
    --hostname "127.0.0.1:$P_REKOR" --http-address 127.0.0.1 --http-port "$P_REKOR" \
    --grpc-address 127.0.0.1 --grpc-port "$P_REKOR_GRPC" --http-metrics-port "$P_REKOR_METRICS"
  wait_port "$P_REKOR" "$D/rekor.log"

  $setup trust-config "$D"
  trap - ERR
  echo "started in $((SECONDS - t0)) s; trust config: $D/trust_config.json; env: $D/env"
  cat "$D/env"
}

cmd_stop() {
  local d="$1" pid
  [[ -f "$d/pids" ]] || { echo "no $d/pids" >&2; return 0; }
  while read -r pid; do
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  done <"$d/pids"
  rm -f "$d/pids"
}

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start "${2:?usage: $0 start DIR}" ;;
  stop) cmd_stop "${2:?usage: $0 stop DIR}" ;;
  check) "$PY" "$HERE/sigstore_local_check.py" "${2:?usage: $0 check DIR}" ;;
  *) echo "usage: $0 build|start DIR|stop DIR|check DIR" >&2; exit 2 ;;
esac
