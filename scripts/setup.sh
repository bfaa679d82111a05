#!/usr/bin/env bash
# One-time (and idempotent) set-up of everything Kaizen needs on a fresh Debian machine:
# system packages, the project virtualenv, a Docker engine, the Pulumi engine and the local base images.
# Each step is skipped when already done, so a second run takes seconds.
#
# Env: KAIZEN_SKIP_APT=1 skips apt-get (for machines where the packages are already there).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { echo "setup: $*" >&2; }

# qemu-user-static + binfmt-support: linux/arm64 images are built and tested under QEMU user emulation;
# chromium renders the drift report in its browser test; curl and util-linux (unshare) run the local
# Sigstore instance (scripts/sigstore-local.sh).
APT_PACKAGES=(python3-venv docker.io docker-registry skopeo prometheus prometheus-alertmanager mmdebstrap wrk
              qemu-user-static binfmt-support chromium curl util-linux)
if [ "${KAIZEN_SKIP_APT:-0}" != 1 ]; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        SUDO=""
        [ "$(id -u)" = 0 ] || SUDO=sudo
        $SUDO apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}" >&2
    fi
fi

# Register QEMU's aarch64 interpreter with binfmt_misc (no systemd here to do it at boot). The
# F flag (fix-binary) makes it work inside containers and chroots too.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && command -v update-binfmts >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    [ -e /proc/sys/fs/binfmt_misc/register ] || $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc >&2 || true
    $SUDO update-binfmts --enable qemu-aarch64 >&2 || log "could not enable qemu-aarch64 in binfmt_misc: arm64 tests will fail"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.kaizen-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "installing Python dependencies"
    .venv/bin/pip install -q --upgrade pip >&2
    .venv/bin/pip install -q -e ".[dev]" >&2
    touch "$stamp"
fi

bash scripts/start-docker.sh >&2
PULUMI_BIN=$(bash scripts/install-pulumi.sh | tail -1)
log "pulumi engine in $PULUMI_BIN"
# actionlint (the workflow linter the tests run) from the Go module proxy, pinned.
ACTIONLINT_VERSION=v1.7.12
TOOLS_BIN="$HOME/.cache/kaizen/bin"
if [ "$("$TOOLS_BIN/actionlint" -version 2>/dev/null | head -1)" != "$ACTIONLINT_VERSION" ]; then
    log "installing actionlint $ACTIONLINT_VERSION"
    GOBIN="$TOOLS_BIN" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >&2
fi
# oras (the ORAS CLI), for the edge-bundle round-trip test, from the Go module proxy, pinned.
ORAS_VERSION=v1.3.6
if ! "$TOOLS_BIN/oras" version 2>/dev/null | grep -q "${ORAS_VERSION#v}"; then
    log "installing oras $ORAS_VERSION"
    GOBIN="$TOOLS_BIN" GOFLAGS=-mod=mod go install "oras.land/oras/cmd/oras@$ORAS_VERSION" >&2
fi
# A private Sigstore instance's servers (Fulcio, TesseraCT, timestamp authority, Rekor v2), pinned, from
# the Go module proxy, for the keyless audit-signing tests (~2m40s the first time, then skipped).
bash scripts/sigstore-local.sh build >&2
# Azurite (Microsoft's Azure Storage emulator) from the npm registry, pinned, for the Azure Blob tests.
AZURITE_VERSION=3.37.0
AZURITE_DIR="$HOME/.cache/kaizen/azurite"
if ! grep -qs "\"version\": \"$AZURITE_VERSION\"" "$AZURITE_DIR/node_modules/azurite/package.json"; then
    log "installing azurite $AZURITE_VERSION"
    mkdir -p "$AZURITE_DIR"
    npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2
fi
.venv/bin/kaizen base >&2
# The arm64 bases (mmdebstrap --arch=arm64, under QEMU; cached like the amd64 ones).
.venv/bin/kaizen base --arch arm64 >&2 || log "no arm64 bases (needs qemu-aarch64 in binfmt_misc): the multi-platform tests will fail"
echo "$PULUMI_BIN"
