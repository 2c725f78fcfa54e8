#!/usr/bin/env bash
# Build msg/ and srv/ (the flash_rt_ros interfaces) against the ROS 2 pip wheels, with plain cmake.
#
#   bash scripts/build_interfaces.sh            # build if msg/srv/CMake inputs changed, else skip (~0.3 s)
#   bash scripts/build_interfaces.sh --force    # rebuild
#   FLASH_RT_VENV=/path/to/venv bash scripts/build_interfaces.sh
#
# What it does (see docs/ros.md, "Interfaces from pip wheels"):
#   1. pip-installs the build-only wheels pinned in requirements-ros-build.txt (rosidl generators, ament_cmake, ...).
#   2. cmake configures the repository root (CMakeLists.txt, FLASH_RT_ROS_INTERFACES_ONLY=ON) with
#      AMENT_PREFIX_PATH=<venv> and cmake/pip_ros_wheel_fix.cmake injected via -DCMAKE_PROJECT_INCLUDE (fixes the
#      wheels' /opt/python include paths; CMakeLists.txt itself is not changed by this).
#   3. installs: shared libraries into <venv>/lib (the ros wheels' bootstrapper already puts it on LD_LIBRARY_PATH),
#      the generated Python (flash_rt_ros/msg, flash_rt_ros/srv, type-support extension) into
#      <venv>/opt/flash_rt_ros_interfaces/site-packages, which a .pth file puts on sys.path. The generated
#      flash_rt_ros/__init__.py (empty) is removed there, so that directory is only a portion that our own
#      flash_rt_ros/__init__.py picks up through pkgutil.extend_path.
#   4. checks that `from flash_rt_ros.msg import ActionChunk` works, and writes a stamp.
# On a real ROS 2 install use colcon instead (docs/ros.md); this script is for the pip route (CI, x86_64 dev boxes).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FLASH_RT_VENV:-${VIRTUAL_ENV:-$REPO/.venv}}"
VENV="$(cd "$VENV" && pwd)"
PY="$VENV/bin/python"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

[[ -x "$PY" ]] || { echo "build_interfaces: no python at $PY (set FLASH_RT_VENV)" >&2; exit 2; }
command -v cmake >/dev/null || { echo "build_interfaces: cmake not found (apt-get install cmake g++ make)" >&2; exit 2; }
command -v c++ >/dev/null || { echo "build_interfaces: no C++ compiler (apt-get install g++)" >&2; exit 2; }

PYVER="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
PYDIR_REL="opt/flash_rt_ros_interfaces/python${PYVER}/site-packages"
PYDIR="$VENV/$PYDIR_REL"
PTH="$SITE/flash_rt_ros_interfaces.pth"
BUILD="$REPO/build/ros_interfaces"
STAMP="$VENV/opt/flash_rt_ros_interfaces/.stamp"

inputs_hash() {
  (cd "$REPO" && cat msg/*.msg srv/*.srv CMakeLists.txt package.xml cmake/pip_ros_wheel_fix.cmake \
     requirements-ros-build.txt requirements-ros.txt scripts/build_interfaces.sh; echo "$VENV $PYVER") \
    | sha256sum | cut -d' ' -f1
}
HASH="$(inputs_hash)"

check_import() {
  # from the repo root, as pytest / python -m do; -I would drop the .pth, so plain -c
  (cd "$REPO" && "$PY" -c '
from flash_rt_ros.msg import ActionChunk
from flash_rt_ros.srv import SetPrompt, Calibrate
m = ActionChunk(); m.data = [1.0]; assert SetPrompt.Request().prompt == "" and Calibrate.Response().cache_path == ""
') >/dev/null 2>&1
}

if [[ $FORCE -eq 0 && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" && -f "$PTH" ]] && check_import; then
  echo "build_interfaces: up to date ($PYDIR)"
  exit 0
fi

t0=$(date +%s)
echo "build_interfaces: installing build-only wheels (requirements-ros-build.txt)"
"$PY" -m pip install --quiet --disable-pip-version-check -r "$REPO/requirements-ros.txt" -r "$REPO/requirements-ros-build.txt"

rm -rf "$BUILD"
mkdir -p "$BUILD"
echo "build_interfaces: cmake configure -> $BUILD"
AMENT_PREFIX_PATH="$VENV" cmake -S "$REPO" -B "$BUILD" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$VENV" \
  -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPYTHON_INSTALL_DIR="$PYDIR_REL" \
  -DPython3_EXECUTABLE="$PY" \
  -DBUILD_TESTING=OFF \
  -DFLASH_RT_ROS_INTERFACES_ONLY=ON \
  -DCMAKE_PROJECT_INCLUDE="$REPO/cmake/pip_ros_wheel_fix.cmake" \
  > "$BUILD/configure.log" 2>&1 || { tail -40 "$BUILD/configure.log"; echo "build_interfaces: configure failed (log: $BUILD/configure.log)" >&2; exit 1; }
echo "build_interfaces: build"
AMENT_PREFIX_PATH="$VENV" cmake --build "$BUILD" -j "$(nproc)" > "$BUILD/build.log" 2>&1 \
  || { tail -40 "$BUILD/build.log"; echo "build_interfaces: build failed (log: $BUILD/build.log)" >&2; exit 1; }
rm -rf "$PYDIR/flash_rt_ros"
cmake --install "$BUILD" > "$BUILD/install.log" 2>&1 \
  || { tail -40 "$BUILD/install.log"; echo "build_interfaces: install failed" >&2; exit 1; }

# The generated package's __init__.py is empty; without it the directory is a namespace portion, so a regular
# flash_rt_ros package (ours, with extend_path) always wins wherever it is on sys.path, and still finds msg/srv.
rm -rf "$PYDIR/flash_rt_ros/__init__.py" "$PYDIR/flash_rt_ros/__pycache__/__init__."*
echo "$PYDIR" > "$PTH"

if ! check_import; then
  (cd "$REPO" && "$PY" -c 'from flash_rt_ros.msg import ActionChunk') || true
  echo "build_interfaces: built, but 'from flash_rt_ros.msg import ActionChunk' fails (see above)" >&2
  exit 1
fi
mkdir -p "$(dirname "$STAMP")"
echo "$HASH" > "$STAMP"
echo "build_interfaces: done in $(( $(date +%s) - t0 )) s -> $PYDIR (+ $PTH)"
