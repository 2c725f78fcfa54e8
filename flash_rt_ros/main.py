"""Console entry point `flash-rt-node` (and lib/flash_rt_ros/flash_rt_node, which ros2 launch runs).

    flash-rt-node --ros-args --params-file config/pi05_cpu.yaml -p checkpoint:=/path/to/ckpt
    python -m flash_rt_ros.main --ros-args --params-file config/pi05_cpu.yaml ...

Fast DDS: unless configured by the user, a 32 MB shared-memory segment for camera-sized messages
(flash_rt_ros/fastdds.py; the log says which setup is in effect).
SIGINT / SIGTERM stop it in order (lifecycle shutdown, then the context; flash_rt_ros.stop says why rclpy's own
signal handlers are not used) and exit 0.
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
from rclpy.signals import SignalHandlerOptions

from flash_rt_ros import fastdds
from flash_rt_ros.stop import Interrupted, StopOnSignal


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


def spin(executor, logger=None, stop=None) -> None:
    """spin_once until shutdown or a stop signal (flash_rt_ros.stop). EventsExecutor.spin() in the rclpy 9.1.2
    wheel busy-loops without running any callback (and ignores SIGTERM); spin_once works for both executors, so
    both use this loop. The timeout bounds how long a signal waits to be seen (Python runs its handler when the
    main thread next runs bytecode: at the next callback or when spin_once returns).

    An exception escaping a callback would end spin(); here it is logged with its traceback and the node keeps
    serving (callbacks already turn every expected bad input into a logged error, so this is the last line)."""
    while rclpy.ok() and not (stop is not None and stop.requested):
        try:
            executor.spin_once(timeout_sec=0.25)
        except (KeyboardInterrupt, ExternalShutdownException):
            raise
        except Exception:  # noqa: BLE001
            if logger is None or not rclpy.ok():
                raise
            logger.error("unexpected error in a callback (node keeps running):\n" + traceback.format_exc())


def main(argv=None) -> int:
    args = sys.argv if argv is None else argv
    stop = StopOnSignal().install()   # ours, not rclpy's: see flash_rt_ros.stop for why
    malloc_tuned = tune_malloc()
    dds = fastdds.apply()             # before rclpy.init: Fast DDS reads it when the participant is created
    node = executor = None
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
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
        node.get_logger().info(dds.message)
        if node.get_parameter("autostart").value:
            from rclpy.lifecycle import TransitionCallbackReturn
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
            else:
                # the ERROR line with the reason is configure's own; this only says what happens next
                node.get_logger().info("autostart: not activating; the node stays up, unconfigured: fix the "
                                       "parameters and call ~/change_state configure")
        stop.spinning = True
        spin(executor, node.get_logger(), stop)
    except Interrupted:
        pass   # a signal during start-up (or a second one): skip the rest, shut down below
    except ExternalShutdownException:
        pass
    finally:
        _shut_down(node, executor, stop)
    return 0


def _shut_down(node, executor, stop: StopOnSignal) -> None:
    """Orderly: the lifecycle shutdown transition first (timer, subscriptions and publishers go while the context
    is still valid), then the executor, the node and the context."""
    log = node.get_logger() if node is not None else rclpy.logging.get_logger("flash_rt_node")
    if stop.requested:
        log.info(f"{stop.signame} received: shutting down")
    if node is not None and rclpy.ok():
        state = node._state_machine.current_state[1]   # trigger_shutdown raises from a transition state
        if state in ("unconfigured", "inactive", "active"):
            try:
                node.trigger_shutdown()
            except Exception as e:  # noqa: BLE001 - best effort on the way out; say what went wrong
                log.warning(f"lifecycle shutdown from {state!r} failed: {type(e).__name__}: {e}")
    if executor is not None:
        executor.shutdown()
    if node is not None:
        node.destroy_node()
    if rclpy.ok():
        log.info("shut down cleanly")
        rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
