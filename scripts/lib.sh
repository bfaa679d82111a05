# Shared shell helpers, sourced by the scripts (never run on its own).
#   kaizen_root   the checkout's root directory
#   pulumi_env    PATH with the Pulumi engine and the venv, the file backend and the passphrase
#                 (PULUMI_BACKEND_URL default file://$HOME/.kaizen/pulumi-state,
#                 PULUMI_CONFIG_PASSPHRASE default "kaizen-local"); tests/support/pulumi_cli.py
#                 base_env is the Python twin used by the tests.

kaizen_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

pulumi_env() {
    local root
    root=$(kaizen_root)
    PATH="$(bash "$root/scripts/install-pulumi.sh" | tail -1):$root/.venv/bin:$PATH"
    export PATH
    export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$HOME/.kaizen/pulumi-state}
    export PULUMI_CONFIG_PASSPHRASE=${PULUMI_CONFIG_PASSPHRASE:-kaizen-local}
    export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
    case "$PULUMI_BACKEND_URL" in file://*) mkdir -p "${PULUMI_BACKEND_URL#file://}" ;; esac
}
