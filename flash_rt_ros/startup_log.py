"""The two start-up log lines: where configure's time went, and what the first chunk cost after activation.

Why: a cold start to the first chunk took 42.7 s on a GPU and a warm one 14.8 s, and a user could not tell loading
from weight-cache misses, compilation, graph capture or the first tick's FP8 calibration. The engine records its
phases (`Policy.startup_phases`: (phase, seconds, detail) in the order they ran, appended later by the first tick on
GPU targets); the node times its own (policy load, prompt, warm-up) and nests the engine's phases under the node
phase they ran in, so the numbers add up instead of being listed twice. Pure (strings in, a string out).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class NodePhase:
    name: str
    seconds: float
    engine: list = field(default_factory=list)   # the engine's (phase, seconds, detail) that ran inside it


def engine_phases(policy) -> list:
    """policy.startup_phases, or [] for an engine without it."""
    return list(getattr(policy, "startup_phases", None) or [])


def _engine(phases, within_s: float | None = None) -> str:
    """The engine phases in brackets; with `within_s` (the node phase's own time) the rest of it as "other" (e.g.
    importing the frontend before the engine's first phase starts its clock)."""
    parts = [f"{name} {sec:.2f} s" + (f" ({detail})" if detail else "") for name, sec, detail in phases]
    rest = within_s - sum(sec for _, sec, _ in phases) if within_s is not None else 0.0
    if parts and rest >= 0.005:
        parts.append(f"other {rest:.2f} s")
    return " [" + ", ".join(parts) + "]" if parts else ""


def configure_line(phases: list[NodePhase], total_s: float) -> str:
    """e.g. "startup: configure 3.42 s = load 1.20 s [open 0.40 s (...), weights 0.70 s (weight cache hit), buffers
    0.10 s] + prompt 0.01 s + warm-up 2.21 s [warmup 2.00 s (2 step(s) on placeholder inputs)]"."""
    body = " + ".join(f"{p.name} {p.seconds:.2f} s{_engine(p.engine, p.seconds)}" for p in phases)
    other = total_s - sum(p.seconds for p in phases)
    tail = f" + other {other:.2f} s" if other >= 0.005 else ""
    return f"startup: configure {total_s:.2f} s = {body}{tail}"


def first_chunk_line(since_activate_s: float, waited_s: float, tick_s: float, added: list) -> str:
    """e.g. "startup: first chunk 2.31 s after activate = 1.95 s until a tick found every input fresh + first tick
    0.36 s [calibration 0.30 s (FP8 scales from the first real observation)]"."""
    line = (f"startup: first chunk {since_activate_s:.2f} s after activate = {waited_s:.2f} s until a tick found "
            f"every input fresh + first tick {tick_s:.2f} s")
    return line + (_engine(added) if added else " (no engine phase added by the first tick)")
