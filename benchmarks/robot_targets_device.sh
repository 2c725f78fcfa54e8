#!/usr/bin/env bash
# The robot-targets runs on one lent H200 (device tool), in the order they were made (docs/benchmarks.md, sixth
# session). Thor and RTX 5090 cells run by override here: label every number "H200, <target> path by override".
#   bash benchmarks/robot_targets_device.sh latency    # smoke, Hopper A/B before/after, thor/rtx latencies
#   bash benchmarks/robot_targets_device.sh suite      # the GPU suite: hopper + thor, then rtx_sm120 (override)
# "before" is the tree of the session's starting commit in .ab/before (git archive a6470dc flash_rt benchmarks).
set -u
export PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/out}"
CK=/tmp/frt_full_ckpt
log() { echo "=== $* ($(date +%T))"; }
full_ckpt() {
  [[ -f "$CK/model.safetensors" ]] || python3 -c "
from flash_rt.testing.full_size import build_full_checkpoint; build_full_checkpoint('$CK', device='cuda')"
}
lat() { python3 benchmarks/latency.py --ckpt "$CK" --no-baseline --replays 200 "$@"; }
case "${1:-latency}" in
  latency)
    nvidia-smi -L; python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
    log smoke; python3 benchmarks/cells_smoke.py --hardware hopper thor 2>&1 | tail -8
    log smoke-rtx; TRITON_OVERRIDE_ARCH=sm120 python3 benchmarks/cells_smoke.py --hardware rtx_sm120 2>&1 | tail -4
    log checkpoint; full_ckpt
    for i in 1 2; do
      log "A/B $i before"; (cd .ab/before && python3 benchmarks/latency.py --ckpt "$CK" --views 2 --horizons 50 \
        --no-baseline --replays 200 --out "$OUT/before$i" 2>&1 | tail -3)
      log "A/B $i after"; lat --views 2 --horizons 50 --hardware hopper --out "$OUT/after$i" 2>&1 | tail -3
    done
    log thor; lat --views 1 2 3 --horizons 10 50 --hardware thor --out "$OUT/thor" 2>&1 | tail -9
    log rtx; TRITON_OVERRIDE_ARCH=sm120 lat --views 1 2 3 --horizons 10 50 --hardware rtx_sm120 --out "$OUT/rtx" 2>&1 | tail -9
    ;;
  suite)
    log suite-hopper-thor
    python3 -m pytest -m gpu test/gpu -q -rA -p no:cacheprovider "${@:2}" 2>&1 | tee "$OUT/suite.log" | grep -E "PASSED|FAILED|ERROR|worst cos|passed|failed" | tail -80
    ;;
  rtx)
    log smoke-rtx; TRITON_OVERRIDE_ARCH=sm120 python3 benchmarks/cells_smoke.py --hardware rtx_sm120 2>&1 | tail -4
    log checkpoint; full_ckpt
    log rtx; TRITON_OVERRIDE_ARCH=sm120 lat --views 1 2 3 --horizons 10 50 --hardware rtx_sm120 --out "$OUT/rtx" 2>&1 | tail -9
    ;;
  suite-rtx)
    log suite-rtx
    TRITON_OVERRIDE_ARCH=sm120 python3 -m pytest -m gpu test/gpu/test_pi05_gpu.py -q -rA -p no:cacheprovider "${@:2}" 2>&1 | tee "$OUT/suite_rtx.log" | grep -E "PASSED|FAILED|ERROR|worst cos|passed|failed" | tail -40
    ;;
esac
