#!/usr/bin/env bash
# Create/refresh the project venv (.venv): pinned runtime + test deps, ROS 2 wheels, this repo (editable),
# and the ROS interfaces (msg/, srv/) built with cmake. Idempotent: re-running with unchanged requirements
# takes about a second. Override the location with FLASH_RT_VENV.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FLASH_RT_VENV:-$REPO/.venv}"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup_env: creating venv $VENV ($($PYTHON --version))"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
STAMP="$VENV/.flash_rt_requirements"
HASH="$(cat "$REPO/requirements.txt" "$REPO/requirements-ros.txt" "$REPO/requirements-orbax.txt" "$REPO/setup.py" \
  | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$HASH" ]]; then
  t0=$(date +%s)
  echo "setup_env: installing requirements (CPU torch, ROS 2 wheels, Orbax readers, ...)"
  # requirements-orbax.txt: openpi's JAX/Orbax checkpoints (tensorstore; orbax + CPU jax to write them in tests);
  # about 12 s more on a fresh venv
  "$PY" -m pip install --quiet --disable-pip-version-check -r "$REPO/requirements.txt" -r "$REPO/requirements-ros.txt" \
    -r "$REPO/requirements-orbax.txt"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$REPO"
  echo "$HASH" > "$STAMP"
  echo "setup_env: requirements installed in $(( $(date +%s) - t0 )) s"
fi
FLASH_RT_VENV="$VENV" bash "$REPO/scripts/build_interfaces.sh"
