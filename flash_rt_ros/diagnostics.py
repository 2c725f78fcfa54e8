"""diagnostic_msgs/DiagnosticArray for /diagnostics: one status for the engine loop, one per input.

Levels: OK; WARN when ticks are being skipped (a stale or never-seen input, no prompt), an input sent bad
messages during the last period, or DDS lost a significant share of an input's messages (input_health.py); ERROR when the node is not configured (e.g. the checkpoint failed to load).
The safety status (node.py `_safety_status`): ERROR when the safety envelope kept a chunk from the controller since
the last report (non-finite actions, or a limit with safety_mode reject), WARN when it clamped one.
"""
from __future__ import annotations

import math

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def _fmt(x) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.3f}"
    return str(x)


def status(name: str, level, message: str, hardware_id: str = "", values: dict | None = None) -> DiagnosticStatus:
    s = DiagnosticStatus()
    s.level = level if isinstance(level, bytes) else bytes([level])
    s.name, s.message, s.hardware_id = name, message, hardware_id
    s.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in (values or {}).items()]
    return s


def engine_values(summary: dict, prompt: str | None, state: str) -> dict:
    v = {"lifecycle_state": state, "rate_hz": summary["rate_hz"], "ticks": summary["ticks"],
         "published": summary["published"], "skipped": summary["skipped"], "prompt": prompt or ""}
    for group in ("jitter_ms", "inference_ms", "overhead_ms", "latency_ms"):
        for k in ("p50", "p99", "max"):
            v[f"{group[:-3]}_{k}_ms"] = summary[group][k]
    v["startup_jitter_max_ms"] = summary["startup_jitter_max_ms"]   # first intervals after activation
    return v


def array_msg(stamp, statuses) -> DiagnosticArray:
    a = DiagnosticArray()
    a.header.stamp = stamp
    a.status = list(statuses)
    return a
