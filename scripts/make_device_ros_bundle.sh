#!/usr/bin/env bash
# Assemble .rosgpu/: the ROS 2 (pip wheels) runtime for a machine that has Python but no ROS and no network
# (the GPU box), to travel inside the working tree. scripts/device_ros_env.sh puts it on the paths there.
#
#   python3.12 -m venv /tmp/ros312
#   /tmp/ros312/bin/pip install -r requirements-ros.txt -r requirements-ros-build.txt rosbags==0.11.9 numpy setuptools
#   FLASH_RT_VENV=/tmp/ros312 bash scripts/build_interfaces.sh
#   FLASH_RT_VENV=/tmp/ros312 bash scripts/make_device_ros_bundle.sh          # -> .rosgpu/ (ignored via .gitignore)
#
# The venv's Python minor version must be the target machine's (cp312 for the GPU box). Layout:
#   .rosgpu/site      rclpy, the message packages, rosidl_parser, rosbags + its deps (not numpy/yaml/torch/cv2)
#   .rosgpu/iface     the built flash_rt_ros/msg, flash_rt_ros/srv portion (no __init__.py; see build_interfaces.sh)
#   .rosgpu/lib       every shared library the venv's lib/ and site-packages/ros_*.libs hold (what the wheels'
#                     bootstrapper would put on LD_LIBRARY_PATH), deduplicated; no symlinks anywhere
#   .rosgpu/fallback  typing_extensions, added by device_ros_env.sh only when the target Python lacks it
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(cd "${FLASH_RT_VENV:?set FLASH_RT_VENV to the cp3XX venv with the ros wheels and built interfaces}" && pwd)"
PY="$VENV/bin/python"
PYVER="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
SITE="$VENV/lib/python$PYVER/site-packages"
IFACE="$VENV/opt/flash_rt_ros_interfaces/python$PYVER/site-packages/flash_rt_ros"
OUT="$REPO/.rosgpu"
[[ -d "$IFACE/msg" ]] || { echo "no built interfaces at $IFACE (run build_interfaces.sh with FLASH_RT_VENV)" >&2; exit 2; }

PKGS=(rclpy rpyutils rcutils ament_index_python rosidl_parser rosidl_generator_py
      action_msgs builtin_interfaces diagnostic_msgs geometry_msgs lifecycle_msgs rcl_interfaces rmw_dds_common
      rosgraph_msgs sensor_msgs service_msgs std_msgs std_srvs trajectory_msgs type_description_interfaces
      unique_identifier_msgs
      rosbags ruamel lz4 apsw backports)

rm -rf "$OUT"
mkdir -p "$OUT/site" "$OUT/lib" "$OUT/iface" "$OUT/fallback"
for p in "${PKGS[@]}"; do
  [[ -d "$SITE/$p" ]] || { echo "missing $SITE/$p" >&2; exit 1; }
  cp -rL "$SITE/$p" "$OUT/site/"
done
# the distribution metadata too (rosbags' MCAP writer calls importlib.metadata.version("rosbags")); RECORD dropped
for p in "${PKGS[@]}"; do
  for m in "$SITE/$p"[-_]*.dist-info "$SITE/$p"[-_]*.egg-info "$SITE/ros_$p"-*.dist-info; do
    [[ -d "$m" ]] && cp -rL "$m" "$OUT/site/" && rm -f "$OUT/site/$(basename "$m")/RECORD"
  done
done
cp -rL "$IFACE" "$OUT/iface/"
cp -L "$SITE/typing_extensions.py" "$OUT/fallback/"
# apsw: the sqlite shell/extension binaries and the test suite are not used by rosbags
rm -rf "$OUT/site/apsw/sqlite_extra_binaries" "$OUT/site/apsw/tests"
# rosidl_generator_py: every generated message module calls its import_type_support at runtime; the generator part
# (which would need rosidl_pycommon/empy) is optional in its __init__ and not carried
rm -rf "$OUT/site/rosidl_generator_py/"{generate_py_impl.py,cli.py,_dummy.*}

# shared libraries: the auditwheel .libs dirs (the same hash-named files repeat across wheels) and <venv>/lib
for d in "$SITE"/ros_*.libs; do
  for f in "$d"/*; do
    b="$(basename "$f")"
    if [[ -e "$OUT/lib/$b" ]]; then cmp -s "$f" "$OUT/lib/$b" || { echo "differing copies of $b" >&2; exit 1; }
    else cp -L "$f" "$OUT/lib/"; fi
  done
done
# <venv>/lib: wheels can't hold symlinks, so libfoo.so / libfoo.so.X / libfoo.so.X.Y.Z are full copies; keep only
# the SONAME (the name DT_NEEDED uses) of each group of identical files
declare -A seen=()
for f in "$VENV"/lib/*.so*; do
  [[ -f "$f" ]] || continue
  sum="$(md5sum < "$f" | cut -d' ' -f1)"
  seen[$sum]+="$f "
done
for sum in "${!seen[@]}"; do
  files=(${seen[$sum]})
  keep="${files[0]}"
  if (( ${#files[@]} > 1 )); then
    soname="$(readelf -d "${files[0]}" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
    for f in "${files[@]}"; do [[ "$(basename "$f")" == "$soname" ]] && keep="$f"; done
  fi
  cp -L "$keep" "$OUT/lib/"
done

find "$OUT" \( -name __pycache__ -o -name '*.pyi' -o -name py.typed \) -prune -exec rm -rf {} +
find "$OUT" -name '*.pyc' -delete
# debug symbols are not needed at runtime (the dynamic symbol table stays): strip what `file` calls "not stripped"
# (libfastdds 19 -> 15 MB, ...); already-stripped auditwheel libraries are left byte-identical
find "$OUT" -type f -name '*.so*' -print0 | while IFS= read -r -d '' f; do
  file -b "$f" | grep -q 'not stripped' && strip --strip-unneeded "$f"
done

if [[ -n "$(find "$OUT" -type l)" ]]; then echo "symlinks in $OUT (they don't travel):" >&2; find "$OUT" -type l >&2; exit 1; fi
echo "$PYVER" > "$OUT/PYVER"
du -sh "$OUT" "$OUT"/*
