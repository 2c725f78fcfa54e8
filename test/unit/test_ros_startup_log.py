"""flash_rt_ros.startup_log: the start-up lines nest the engine's phases under the node's and add up (pure)."""
from __future__ import annotations

from flash_rt_ros.startup_log import NodePhase, configure_line, engine_phases, first_chunk_line


def test_configure_line_nests_engine_phases_and_names_the_rest():
    phases = [NodePhase("load", 4.0, [("open", 0.4, "checkpoint, config"), ("weights", 3.1, "weight cache hit"),
                                      ("buffers", 0.1, "")]),
              NodePhase("prompt", 0.01, []),
              NodePhase("warm-up", 2.9, [("warmup", 2.0, "2 step(s)"), ("capture", 0.8, "")])]
    line = configure_line(phases, 7.0)
    assert line == ("startup: configure 7.00 s = load 4.00 s [open 0.40 s (checkpoint, config), weights 3.10 s "
                    "(weight cache hit), buffers 0.10 s, other 0.40 s] + prompt 0.01 s + warm-up 2.90 s [warmup "
                    "2.00 s (2 step(s)), capture 0.80 s, other 0.10 s] + other 0.09 s")


def test_first_chunk_line_with_and_without_first_tick_phases():
    assert first_chunk_line(2.31, 1.95, 0.36, [("calibration", 0.3, "FP8 scales from the first real observation")]) \
        == ("startup: first chunk 2.31 s after activate = 1.95 s until a tick found every input fresh + first tick "
            "0.36 s [calibration 0.30 s (FP8 scales from the first real observation)]")
    assert first_chunk_line(0.2, 0.1, 0.1, []).endswith("(no engine phase added by the first tick)")


def test_engine_without_startup_phases():
    class OldPolicy:
        pass
    assert engine_phases(OldPolicy()) == [] and engine_phases(None) == []
