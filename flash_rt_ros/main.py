"""Console entry point `flash-rt-node` (and lib/flash_rt_ros/flash_rt_node, which ros2 launch runs).

    flash-rt-node --ros-args --params-file config/pi05_cpu.yaml -p checkpoint:=/path/to/ckpt
    python -m flash_rt_ros.main --ros-args --params-file config/pi05_cpu.yaml ...

autostart (parameter, default true) configures and activates the node itself, since `ros2 lifecycle` may not be
available; with autostart:=false it waits for lifecycle_msgs/srv/ChangeState calls on ~/change_state.
The executor comes from the `executor` parameter: "events" (rclpy.experimental.EventsExecutor, the default,
chosen by measurement: docs/benchmarks.md "ROS node (CPU)") or "single" (SingleThreadedExecutor).
"""
from __future__ import annotations

import ctypes
import os
import sys
import traceback

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


def tune_malloc() -> bool:
    """Keep large allocations on the heap and freed memory in the process (glibc mallopt), so the ~1 MB buffers
    rclpy allocates for every camera frame reuse warm pages instead of being mmapped and page-faulted in anew.

    Why: glibc mmaps allocations over its (dynamic) threshold and gives freed heap tops back to the OS, so each
    640x480 frame cost ~640 minor page faults. Measured in a subscriber process on the 2-core VM with 3 x 640x480
    at 30 Hz: 2.1-2.4 ms CPU a frame without this, 0.53 (raw) / 0.71 (deserialized) ms with it, 0 faults a
    frame (docs/benchmarks.md). Large model tensors (> 32 MB) are still mmapped. FLASH_RT_MALLOPT=0 turns it off.
    Returns whether it was applied."""
    if os.environ.get("FLASH_RT_MALLOPT", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 256 << 20))


def make_executor(kind: str, context=None):
    if kind == "events":
        from rclpy.experimental import EventsExecutor
        return EventsExecutor(context=context)
    return SingleThreadedExecutor(context=context)


def spin(executor, logger=None) -> None:
    """spin_once until shutdown. EventsExecutor.spin() in the rclpy 9.1.2 wheel busy-loops without running any
    callback (and ignores SIGTERM); spin_once works for both executors, so both use this loop.

    An exception escaping a callback would end spin(); here it is logged with its traceback and the node keeps
    serving (callbacks already turn every expected bad input into a logged error, so this is the last line)."""
    while rclpy.ok():
        try:
            executor.spin_once(timeout_sec=0.5)
        except (KeyboardInterrupt, ExternalShutdownException):
            raise
        except Exception:  # noqa: BLE001
            if logger is None or not rclpy.ok():
                raise
            logger.error("unexpected error in a callback (node keeps running):\n" + traceback.format_exc())


def main(argv=None) -> int:
    args = sys.argv if argv is None else argv
    malloc_tuned = tune_malloc()
    rclpy.init(args=args)
    from flash_rt_ros.node import FlashRTNode  # after init: imports torch (slow) only when actually starting

    node = FlashRTNode()
    kind = node.get_parameter("executor").value
    if kind not in ("events", "single"):
        node.get_logger().error(f"parameter 'executor' must be 'events' or 'single'; got {kind!r}; using events")
        kind = "events"
    executor = make_executor(kind)
    # SingleThreadedExecutor (rclpy 9.1.2) does not run timers while a coroutine callback waits, so the
    # worker-thread prompt switch is used with the events executor only; "single" runs set_prompt inline.
    node.async_prompt = kind == "events"
    executor.add_node(node)
    node.get_logger().info(f"executor: {type(executor).__name__}, malloc tuned: {malloc_tuned}")

    # SIGINT / SIGTERM: rclpy's own handlers (installed by rclpy.init) shut the context down, which ends spin().
    rc = 0
    try:
        if node.get_parameter("autostart").value:
            from rclpy.lifecycle import TransitionCallbackReturn
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
            else:
                node.get_logger().error("autostart: configure failed (see above); the node stays up, unconfigured; "
                                        "fix the parameters and call ~/change_state configure")
        spin(executor, node.get_logger())
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Ctrl-C / SIGTERM already shut the context down (rclpy moves the node to shuttingdown itself); a normal
        # return with a live context gets a proper lifecycle shutdown
        if rclpy.ok() and node.policy is not None:
            try:
                node.trigger_shutdown()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
