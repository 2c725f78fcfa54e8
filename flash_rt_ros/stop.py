"""SIGINT / SIGTERM for our ROS processes (the node, the synthetic sensors): a flag the spin loop checks.

Why not rclpy's handlers: rclpy.init installs handlers that shut the rcl context down as soon as the signal
arrives, while the executor may be about to run (or be inside) a timer callback on the main thread. The node's
control tick then published on a dead context: the EventsExecutor logged "[FATAL] Exception in 'timers'
callback: Failed to publish: publisher's context is invalid" and the RCLError escaped spin_once with a traceback
(2 of 4 Ctrl-C's on the CPU node with three 640x480 cameras; 3 of 3 at 50 Hz). So our processes call
`rclpy.init(signal_handler_options=SignalHandlerOptions.NO)` and install `StopOnSignal` instead: the signal only
records itself, the loop ends after the callback that is running, and the caller then shuts down in order
(lifecycle shutdown: timer and subscriptions first), the context last.

Python runs signal handlers on the main thread between bytecodes, so a flag is seen within one spin_once timeout.
Before the spin loop starts (`spinning = False`: imports, a 40 s cold GPU load), the first signal raises
`Interrupted` instead, so Ctrl-C does not wait for the load to finish. A second signal always raises: the way
out if an orderly shutdown hangs.
"""
from __future__ import annotations

import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop signal that could not wait for the spin loop (start-up, or a second signal)."""

    def __init__(self, signame: str):
        super().__init__(signame)
        self.signame = signame


class StopOnSignal:
    def __init__(self):
        self.signame: str | None = None   # the first signal received
        self.spinning = False             # False: raise Interrupted at once (start-up)

    def install(self) -> "StopOnSignal":
        for s in SIGNALS:
            signal.signal(s, self._handle)
        return self

    @property
    def requested(self) -> bool:
        return self.signame is not None

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        first = self.signame is None
        if first:
            self.signame = name
        if not (first and self.spinning):
            raise Interrupted(name)
