#!/usr/bin/env bash
# Create one virtualenv per peer server for the serving benchmark, outside the checkout.
#
#   bench/serving/setup_peers.sh [mlflow|bentoml|mlserver|tools ...]   (default: all of them)
#
# Venvs go to ${KAIZEN_BENCH_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/kaizen/bench-venvs}/<peer>.
# Every venv gets the scikit-learn/numpy versions of the project venv, so the one model
# trained by run.py loads identically everywhere. A venv whose requirements are unchanged is
# left as it is (stamp file), so re-running is cheap.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
root="${KAIZEN_BENCH_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/kaizen/bench-venvs}"
project_py="${KAIZEN_PYTHON:-$repo/.venv/bin/python}"
base_py="${PEER_PYTHON:-$(command -v python3.11 || command -v python3)}"

# Versions (override from the environment). Empty = newest on PyPI.
MLFLOW_VERSION="${MLFLOW_VERSION:-}"
BENTOML_VERSION="${BENTOML_VERSION:-}"
MLSERVER_VERSION="${MLSERVER_VERSION:-1.7.1}"

sk_pin=()
if [[ -x "$project_py" ]]; then
  mapfile -t sk_pin < <("$project_py" - <<'PY'
import importlib.metadata as m
for d in ("scikit-learn", "numpy", "scipy", "joblib"):
    try:
        print(f"{d}=={m.version(d)}")
    except m.PackageNotFoundError:
        pass
PY
)
fi

spec() { if [[ -n "$2" ]]; then echo "$1==$2"; else echo "$1"; fi; }

declare -A reqs
reqs[mlflow]="$(spec mlflow "$MLFLOW_VERSION") psutil"
reqs[bentoml]="$(spec bentoml "$BENTOML_VERSION") psutil"
# MLServer 1.7.1 does not start with uvloop >= 0.22.
reqs[mlserver]="$(spec mlserver "$MLSERVER_VERSION") $(spec mlserver-sklearn "$MLSERVER_VERSION") uvloop==0.21.0 psutil"
# Not a peer: the sampling profiler used by bench/serving/profile_kaizen.py.
reqs[tools]="py-spy"

setup_one() {
  local peer="$1" venv="$root/$1"
  local want="${reqs[$peer]}"
  if [[ "$peer" != tools ]]; then want="$want ${sk_pin[*]}"; fi
  if [[ -f "$venv/.kaizen-bench-stamp" && "$(cat "$venv/.kaizen-bench-stamp")" == "$want" ]]; then
    echo "[$peer] up to date: $venv"
    return 0
  fi
  echo "[$peer] creating $venv with: $want"
  rm -rf "$venv"
  "$base_py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q $want
  echo "$want" > "$venv/.kaizen-bench-stamp"
  echo "[$peer] done"
}

mkdir -p "$root"
peers=("$@")
if [[ ${#peers[@]} -eq 0 ]]; then peers=(mlflow bentoml mlserver tools); fi
pids=()
for p in "${peers[@]}"; do
  [[ -n "${reqs[$p]:-}" ]] || { echo "unknown peer: $p" >&2; exit 2; }
  mkdir -p "$root/.logs"
  setup_one "$p" > "$root/.logs/$p.log" 2>&1 &
  pids+=("$!")
done
rc=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then tail -n1 "$root/.logs/${peers[$i]}.log"
  else echo "[${peers[$i]}] FAILED, see $root/.logs/${peers[$i]}.log" >&2; tail -n 20 "$root/.logs/${peers[$i]}.log" >&2; rc=1; fi
done
exit $rc
