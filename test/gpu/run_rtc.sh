#!/usr/bin/env bash
# Real-time chunking + delta mask on the GPU cells (test/gpu/test_pi05_rtc_gpu.py), both passes an H200 needs:
# plain (hopper, thor by override) and under Triton's arch override (rtx_sm120, rtx_sm89; conftest.cell_skip_reason).
# Record from the -s output: "tiny fp8 rtc <cell>: worst cos ..., worst |frozen - prefix| ..." and
# "full-size fp8 rtc <cell>: ..." per cell (bars: cos >= 0.995, frozen <= 1e-5 tiny / 1e-4 full size).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -m pytest -m gpu test/gpu/test_pi05_rtc_gpu.py -q -s -k "${1:-}" 2>&1 | tail -40
for arch in sm120 sm89; do
  TRITON_OVERRIDE_ARCH=$arch python3 -m pytest -m gpu test/gpu/test_pi05_rtc_gpu.py -q -s -k "${1:-}" 2>&1 | tail -20
done
