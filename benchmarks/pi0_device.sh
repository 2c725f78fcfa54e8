#!/usr/bin/env bash
# The lead's device run for Pi0's GPU cells (an H200; torch + Triton, no ROS needed). From the repository root:
#   bash benchmarks/pi0_device.sh
# 1. the GPU gates: BF16 >= 0.999 (both layouts), FP8 worst of 20 >= 0.995 on three runs, capture + memory stable
#    (hopper and thor by override; rtx_sm120 under the sm120 lowering in its own process);
# 2. the latencies for docs/benchmarks.md: full-size Pi0, 1/2/3 views, horizon 50, same-run ratio vs eager BF16;
# 3. the same-run A/B at 2 views of the expert o / down as split-K vs cuBLASLt (no-splitk) and the serial schedule
#    against the default state pass and step 0 beside the prefix (no-overlap, bit-checked).
set -euo pipefail
OUT="${OUT:-.}"
python3 -m pytest -m gpu test/gpu/test_pi0_gpu.py -q -s 2>&1 | tee "$OUT/pi0_gpu_tests.log"
TRITON_OVERRIDE_ARCH=sm120 python3 -m pytest -m gpu test/gpu/test_pi0_gpu.py -q -s 2>&1 | tee "$OUT/pi0_gpu_tests_sm120.log"
python3 benchmarks/pi0_latency.py --views 1 2 3 --horizons 50 --hardware hopper --out "$OUT" 2>&1 | tee "$OUT/pi0_latency.log"
python3 benchmarks/pi0_latency.py --views 2 --horizons 50 --hardware hopper --baseline-runs 0 \
  --ab no-splitk no-overlap --out "$OUT/ab" 2>&1 | tee "$OUT/pi0_ab.log"
