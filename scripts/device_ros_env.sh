# Source from the repository root on the GPU box (no ROS, no network) to use the ROS 2 runtime carried in .rosgpu/
# (built here by scripts/make_device_ros_bundle.sh):
#
#   source scripts/device_ros_env.sh && python3 -m pytest -m gpu test/ros/test_bag_replay_gpu.py -q -s
#
# Does by hand what the ros wheels' bootstrapper (ros_wheels_bootstrapper.pth) does in a venv: .pth files are not run
# for PYTHONPATH entries, so LD_LIBRARY_PATH gets the bundle's lib dir (<venv>/lib + site-packages/ros_*.libs,
# merged) and _ROS_WHEELS_BOOTSTRAP_COMPLETE=1 is set. Child processes (the node, replay) inherit all of it.
# Uses the `python3` on PATH (override with FLASH_RT_PYTHON); it must be the Python minor version the bundle was
# built for (.rosgpu/PYVER) and bring numpy, PyYAML, opencv, torch itself.

_frr_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_frr_b="$_frr_repo/.rosgpu"
_frr_py="${FLASH_RT_PYTHON:-python3}"

if [[ ! -d "$_frr_b/site" || ! -d "$_frr_b/lib" ]]; then
  echo "device_ros_env: no ROS bundle at $_frr_b (carry .rosgpu; build it with scripts/make_device_ros_bundle.sh)" >&2
  return 1 2>/dev/null || exit 1
fi
_frr_want="$(cat "$_frr_b/PYVER" 2>/dev/null)"
_frr_have="$("$_frr_py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null)"
if [[ "$_frr_want" != "$_frr_have" ]]; then
  echo "device_ros_env: bundle is for Python $_frr_want, $_frr_py is '$_frr_have'" >&2
  return 1 2>/dev/null || exit 1
fi

# repo root first (our flash_rt_ros package, whose extend_path picks up the generated msg/srv portion in iface/)
export PYTHONPATH="$_frr_repo:$_frr_b/site:$_frr_b/iface${PYTHONPATH:+:$PYTHONPATH}"
# typing_extensions (rclpy needs it) only if the interpreter lacks it, so an installed newer one is not shadowed
if ! "$_frr_py" -c 'import typing_extensions' 2>/dev/null; then
  export PYTHONPATH="$PYTHONPATH:$_frr_b/fallback"
fi
export LD_LIBRARY_PATH="$_frr_b/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
# keep DDS on loopback (ROS_LOCALHOST_ONLY is ignored by Kilted); the tests pick their own domain per module
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-57}"
# rcl's log files (default ~/.ros/log) go somewhere writable
export ROS_LOG_DIR="${ROS_LOG_DIR:-${TMPDIR:-/tmp}/flash_rt_ros_log}"

# not carried (too large / present on the GPU box): say early if one is missing
_frr_missing="$("$_frr_py" -c '
import importlib.util as u
print(" ".join(m for m in ("numpy", "yaml", "cv2", "torch", "safetensors", "sentencepiece", "pytest") if u.find_spec(m) is None))
' 2>/dev/null)"
[[ -n "$_frr_missing" ]] && echo "device_ros_env: WARNING: $_frr_py lacks: $_frr_missing (the node needs numpy, yaml, cv2, torch)" >&2
unset _frr_missing

if ! (cd "$_frr_repo" && "$_frr_py" -c 'import rclpy; from flash_rt_ros.msg import ActionChunk; import rosbags.rosbag2' ) >/dev/null 2>&1; then
  echo "device_ros_env: the bundle does not import; the error:" >&2
  (cd "$_frr_repo" && "$_frr_py" -c 'import rclpy; from flash_rt_ros.msg import ActionChunk; import rosbags.rosbag2')
  unset _frr_repo _frr_b _frr_py _frr_want _frr_have
  return 1 2>/dev/null || exit 1
fi
echo "device_ros_env: ROS 2 runtime from $_frr_b (Python $_frr_have, ROS_DOMAIN_ID=$ROS_DOMAIN_ID, discovery LOCALHOST)"
unset _frr_repo _frr_b _frr_py _frr_want _frr_have
