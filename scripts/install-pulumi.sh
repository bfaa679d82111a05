#!/usr/bin/env bash
# Install the Pulumi engine (CLI + Python language host) without any download site.
#
# - If `pulumi` and `pulumi-language-python` are already on PATH (an official install), use them.
# - Otherwise build the pinned CLI release and the Python language host from the Go module proxy
#   (wrapper modules in scripts/pulumi-engine/, see its README) and cache them outside the
#   checkout, keyed by version:
#     ${XDG_CACHE_HOME:-$HOME/.cache}/kaizen/pulumi/<version>/bin
#   A second run (or CI's fresh clone on the same machine) only checks the cache.
#
# The last line on stdout is the bin directory, so callers can do
#     PATH="$(scripts/install-pulumi.sh | tail -1):$PATH"
# Progress goes to stderr.
#
# Env: KAIZEN_PULUMI_FORCE_BUILD=1 ignores a pulumi on PATH and the cache (rebuilds);
#      KAIZEN_PULUMI_CACHE overrides the cache root; GO overrides the go binary.
set -euo pipefail

VERSION=v3.274.1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ENGINE_DIR="$HERE/pulumi-engine"
CACHE_ROOT=${KAIZEN_PULUMI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kaizen/pulumi}
BIN="$CACHE_ROOT/$VERSION/bin"
# Bump when the build recipe changes so stale caches are rebuilt.
RECIPE=2

log() { echo "install-pulumi: $*" >&2; }

if [ "${KAIZEN_PULUMI_FORCE_BUILD:-0}" != 1 ]; then
    onpath=$(command -v pulumi || true)
    lhpath=$(command -v pulumi-language-python || true)
    if [ -n "$onpath" ] && [ -n "$lhpath" ] && [ "$(dirname "$onpath")" != "$BIN" ]; then
        log "using $onpath ($("$onpath" version 2>/dev/null || echo '?'))"
        dirname "$onpath"
        exit 0
    fi
    if [ -x "$BIN/pulumi" ] && [ -x "$BIN/pulumi-language-python" ] && [ -x "$BIN/pulumi-language-python-host" ] \
        && [ -x "$BIN/pulumi-language-python-exec" ] && [ -x "$BIN/pulumi-resource-pulumi-python" ] \
        && [ "$(cat "$BIN/.recipe" 2>/dev/null)" = "$RECIPE" ]; then
        log "cached $BIN/pulumi ($("$BIN/pulumi" version))"
        echo "$BIN"
        exit 0
    fi
fi

GO=${GO:-}
if [ -z "$GO" ]; then
    if command -v go >/dev/null 2>&1; then GO=$(command -v go)
    elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go
    else
        log "no Go toolchain (need go >= 1.26: the engine is built from the Go module proxy)"
        exit 1
    fi
fi

start=$(date +%s)
tmp=$(mktemp -d "$CACHE_ROOT.build.XXXXXX" 2>/dev/null || { mkdir -p "$CACHE_ROOT" && mktemp -d "$CACHE_ROOT.build.XXXXXX"; })
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"

ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$VERSION"
log "building pulumi $VERSION with $("$GO" version) (a few minutes on 2 cores)"
(
    export GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
    cd "$ENGINE_DIR/language-python"
    "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/bin/pulumi-language-python-host" \
        github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python
    cd "$ENGINE_DIR/cli"
    "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp/bin/" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
) >&2
install -m 0755 "$ENGINE_DIR/pulumi-language-python" "$tmp/bin/pulumi-language-python"

sdk_dir=$(cd "$ENGINE_DIR/cli" && "$GO" list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
for f in python/cmd/pulumi-language-python-exec python/dist/pulumi-resource-pulumi-python; do
    install -m 0755 "$sdk_dir/$f" "$tmp/bin/$(basename "$f")"
done
echo "$RECIPE" >"$tmp/bin/.recipe"

mkdir -p "$(dirname "$BIN")"
rm -rf "$BIN"
mv "$tmp/bin" "$BIN"
"$BIN/pulumi" version >&2
log "built in $(($(date +%s) - start)) s into $BIN"
echo "$BIN"
