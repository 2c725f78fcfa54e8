#!/usr/bin/env bash
# The device runs that issues 16 and 17 wait for, one stage per device call (each fits the 10-minute call limit on
# an H200; a session has 30 minutes of device time, so run them in this order and stop where the budget ends).
# From the repository root, on the device machine (torch + Triton; no ROS needed):
#   OUT=$OUT bash benchmarks/open_issues_device.sh <stage> [<stage> ...]
# Stages (expected wall time on an H200 from earlier runs: ~60-90 s a case of the rung at 30x, three runs):
#   rung-30m   issue 16: the gpu+slow outlier rung, the five :matched variants at 30x (20 observations x 3 runs,
#              plain FP8 and BF16 on the same checkpoint; its -s lines are the numbers) (~6-8 min)
#   rung-30p   the same, the five plain variants (a case BF16 itself fails is xfail with its numbers) (~6-8 min)
#   rung-10    the same, every variant at 10x (one run each), and the cache-key GPU tests (~6-8 min)
#   remedies   issue 16: the two plain kinds the rung failed at 30x (llm_norm, vis_ln; tenth session), three runs of
#              20 observations: plain FP8, BF16 at the flagged groups, BF16 at their blocks, BF16, each FP8 engine's
#              calibration self-check, and the replay A/B of the FP8 engines on vis_ln 30x (~8 min)
#   blocks-default  issue 16: whether BF16 at the flagged blocks can be the default -- what it flags and costs where
#              plain FP8 already holds: the un-injected checkpoint (and its replay A/B), the five :matched variants,
#              v_proj at 30x, one run of 20 each, plain FP8 / blocks / BF16 (~6 min)
#   defaults   the tiny GPU suite under this session's new defaults (BF16 at outlier blocks, prompt buckets): every
#              test of test_pi05_gpu.py but the full-size ones, test_cuda_graph.py, test_pi05_rtc_gpu.py (~5 min)
#   full-rungs the full-size FP8 / BF16 rungs of test_pi05_gpu.py with the default engine (~6 min)
#   views      issue 17: 1 / 2 / 3 views at openpi's 200 prompt slots, the defaults against the tenth session's
#              (buckets off, no outlier remedy) in the same process, kernels per replay (~5 min)
#   selfcheck  issue 16: the FP8 self-check through the frontend on the tiny checkpoint (first tick, calibrate(),
#              the cache path) and the recalibration test it touches (~2 min)
#   buckets    issue 17: test/gpu/run_buckets.sh -- bucket bit-identity, the kernel count read from the graph, and
#              the 64 / 128 / 200-slot replays against the buckets off in the same process (~5 min)
#   floor      issue 17: benchmarks/critical_path.py at 2 views -- per-family critical path, kernels per replay and
#              each flow step's achieved GB/s against the streaming floor (~2 min)
#   probe      issue 17's design question: benchmarks/persistent_probe.py -- us per dependent FP8 GEMM phase as a
#              PDL chain of kernels vs one persistent kernel with in-kernel barriers, with and without loading the
#              next phase's weights before the wait (~1 min). Decided (eleventh session): the barrier costs 1.165x a
#              PDL boundary, so the persistent expert layer is not built (docs/kernel_fusion.md).
#   l2-bound   issue 17's next question: benchmarks/critical_path.py at 2 views, then again with the expert's weights
#              L2-resident (every layer reads layer 0's: all four kinds, the KV cache, both, then gate+up alone,
#              o + down, qkv) -- the most an L2 prefetch could buy, per kernel family (~5 min)
#   pi0        benchmarks/pi0_device.sh: Pi0's GPU tests (overlap bit-identity and real-time chunking included; they
#              also cover the eighth session's CPU-only moves), its latency rows for the vision-only BF16 default,
#              and the same-run A/B of split-K o/down and overlap at 2 views (~9 min)
# Measured (docs/benchmarks.md): tenth session rung-30m, rung-30p, rung-10, floor, the fused MLP (removed since);
# eleventh session probe, selfcheck, remedies, buckets, pi0; thirteenth blocks-default; fourteenth (the default
# engine, bar 30) rung-30p, rung-30m, rung-10's plain kinds and cache keys, full-rungs, defaults, floor on an H100,
# and the replay A/B of the default against plain FP8 on the un-injected checkpoint (0.9989):
#   python3 benchmarks/outlier_stress.py --views 2 --runs 1 --obs 2 --replays 200 --ab-kind none \
#     --modes fp8 fp8_default --kinds none
# Issue 16's gates hold on them (resolved). Fifteenth session (H100): l2-bound (the bound of an L2 prefetch: 3.5 %,
# docs/kernel_fusion.md), views, buckets; the opt-in L2 prefetch it bounded was measured slower and removed.
# Seventeenth session (H100): splits, keys128, full-rungs on the 128-key decoder splits (FP8 worst 0.99816).
# Eighteenth session (H100, no H200 came): acceptance -- 0.945x the code before issue 17 at 2 views with the
# 8-column qkv pairs, made the hopper default after it. Next, on an H200: acceptance again (the issue's card).
#   splits     issue 17, sixteenth session: the key-split rule that keeps MQA programs within the SM count, in the
#              model -- 3 and 1 views at 200 slots, the default against prev-splits (the old rule's splits) in one
#              process, twice, and 2 views as the control (its splits are the same under both rules); then the
#              attention kernel GPU tests (~3 min). Measured (seventeenth session, H100): decode wants its splits past
#              the SMs, prefill within (since: MqaTiles.max_split_keys, keys128 below).
#   keys128    issue 17, seventeenth session: the decoder's 128 keys a split (the default since; 7 splits at 2
#              views, 9 at 3) against 192 (`attn-keys192`, the rule before: 5 and 6), 32-row decoder tiles in 7
#              splits, and the qkv GEMM in 8-column pairs (160 programs, 8 or 4 warps) against the table's 16 (80),
#              2 and 3 views at 200 slots, twice in one process; then the qkv kernel's GPU tests with both
#              pairings (~7 min). Measured (H100): 128 keys a split 0.983x at 2 views, 0.991x at 3 (run then as
#              `attn-keys128` against the old default); 32-row tiles and the 8-column qkv pairs not kept.
#   acceptance issue 17's acceptance run: the code before the issue (commit 7abc1a5, unpacked beside this tree by
#              `mkdir issue17_base && git archive 7abc1a5 | tar -x -C issue17_base`; git-ignored, so the device call
#              carries it) against this tree, on one generated checkpoint, alternating twice at 2 views (its kernels
#              per replay from its profiler, ours from the graph), then 1 and 3 views once each; ours also with the
#              qkv GEMM's 16-column pairs (qkv-bn16, the table before the eighteenth session); then
#              critical_path.py at 200 slots (~10 min; the device call carries issue17_base: carry=["issue17_base"]).
#              Measured (eighteenth session, H100): 0.945x at 2 views; not yet on an H200
# Every stage writes its log to $OUT/<stage>.log; a failing command does not stop the later ones of the stage.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OUT="${OUT:-$(mktemp -d)}"   # the device tool sets $OUT; elsewhere the logs go to a fresh temp dir
RUNG=test/gpu/test_outlier_stress_gpu.py

# the code before issue 17 against this tree, same card, same checkpoint, one device call (see the stage list)
acceptance() {
  local base="${BASE_TREE:-issue17_base}" ck="${TMPDIR:-/tmp}/frt_acceptance_ckpt" v rep
  [ -f "$base/benchmarks/latency.py" ] || { echo "no $base/: mkdir $base && git archive 7abc1a5 | tar -x -C $base" >&2
                                            return 2; }
  python3 -c "from flash_rt.testing.full_size import build_full_checkpoint as b; b('$ck', device='cuda')" || return 1
  before() {   # the old tree's own benchmark; its sys.path puts the old package first
    (cd "$base" && timeout 240 python3 benchmarks/latency.py --horizons 50 --max-token-len 200 --no-baseline \
       --ckpt "$ck" "$@")
  }
  ours() {
    timeout 240 python3 benchmarks/latency.py --horizons 50 --max-token-len 200 --no-baseline --ckpt "$ck" \
      --count-kernels "$@"
  }
  for rep in 1 2; do
    echo "== before, 2 views, run $rep"; before --views 2 --out "$OUT/before_v2_$rep" $([ $rep = 1 ] && echo --profile)
    echo "== ours, 2 views, run $rep"; ours --views 2 --variants default qkv-bn16 --out "$OUT/ours_v2_$rep"
  done
  echo "== before, 1 view"; before --views 1 --out "$OUT/before_v1"
  echo "== ours, 1 view"; ours --views 1 --out "$OUT/ours_v1"
  echo "== before, 3 views"; before --views 3 --out "$OUT/before_v3"
  echo "== ours, 3 views"; ours --views 3 --variants default qkv-bn16 --out "$OUT/ours_v3"
  echo "== ours, 2 views, the flow step against the streaming floor at 200 slots"
  timeout 200 python3 benchmarks/critical_path.py --views 2 --max-token-len 200 --ckpt "$ck" --out "$OUT"
}

stage() {
  case "$1" in
    rung-30m) timeout 580 python3 -m pytest -m "gpu and slow" $RUNG -q -s -rA -k "x30 and matched" ;;
    rung-30p) timeout 580 python3 -m pytest -m "gpu and slow" $RUNG -q -s -rA -k "x30 and not matched" ;;
    rung-10) timeout 480 python3 -m pytest -m "gpu and slow" $RUNG -q -s -rA -k x10
             timeout 90 python3 -m pytest -m gpu test/gpu/test_cache_keys_gpu.py -q -rA ;;
    remedies) timeout 580 python3 benchmarks/outlier_stress.py --views 2 --runs 3 --replays 100 --ab-kind vis_ln \
                --modes fp8 fp8_bf16out fp8_bf16blocks bf16 --kinds llm_norm vis_ln --json "$OUT/remedies.json" ;;
    blocks-default) timeout 480 python3 benchmarks/outlier_stress.py --views 2 --runs 1 --replays 100 --ab-kind none \
                --modes fp8 fp8_bf16blocks bf16 --kinds none llm_norm:matched vis_ln:matched v_proj:matched \
                up_proj:matched ex_ada:matched v_proj --json "$OUT/blocks_default.json" ;;
    defaults) timeout 560 python3 -m pytest -m gpu test/gpu/test_pi05_gpu.py test/gpu/test_cuda_graph.py \
                test/gpu/test_pi05_rtc_gpu.py -q -s -rA -k "not full_size" ;;
    full-rungs) timeout 560 python3 -m pytest -m gpu test/gpu/test_pi05_gpu.py -q -s -rA -k "full_size" ;;
    views) timeout 560 python3 benchmarks/latency.py --views 1 2 3 --horizons 50 --max-token-len 200 --no-baseline \
             --count-kernels --variants default tenth-defaults default tenth-defaults --out "$OUT" ;;
    selfcheck) timeout 240 python3 -m pytest -m gpu test/gpu/test_pi05_gpu.py -q -s -rA \
                 -k "hopper and (self_check or recalibration or warmup_does_not)" ;;
    buckets) timeout 500 bash test/gpu/run_buckets.sh ;;
    probe) timeout 240 python3 benchmarks/persistent_probe.py
           timeout 240 python3 benchmarks/persistent_probe.py --phases 256 ;;
    floor) timeout 300 python3 benchmarks/critical_path.py --views 2 --out "$OUT" ;;
    pi0) timeout 590 bash benchmarks/pi0_device.sh ;;
    l2-bound) timeout 400 python3 benchmarks/critical_path.py --views 2 --out "$OUT" \
                --l2-resident all kv all+kv gu_w o_w+down_w qkv_w ;;
    splits) timeout 450 python3 benchmarks/latency.py --views 3 1 2 --horizons 50 --max-token-len 200 --no-baseline \
              --variants default prev-splits default prev-splits --out "$OUT"
            timeout 120 python3 -m pytest -m gpu test/gpu/test_attention_kernel.py -q -rA ;;
    keys128) timeout 420 python3 benchmarks/latency.py --views 2 3 --horizons 50 --max-token-len 200 --no-baseline \
               --variants default attn-keys192 attn-bm32-7split qkv-bn8 qkv-bn8-w4 \
                          default attn-keys192 attn-bm32-7split qkv-bn8 qkv-bn8-w4 \
               --out "$OUT"
             timeout 120 python3 -m pytest -m gpu test/gpu/test_kernels.py -q -rA -k rope_qkv ;;
    acceptance) acceptance ;;
    *) echo "unknown stage $1 (rung-30m rung-30p rung-10 remedies blocks-default defaults full-rungs views" \
            "selfcheck buckets floor probe pi0 l2-bound splits keys128 acceptance)" >&2; return 2 ;;
  esac
}

[ $# -gt 0 ] || { sed -n '2,/^# Every stage/p' "$0"; exit 2; }
for s in "$@"; do
  # the earlier calls' checkpoints (pytest keeps its last three base temp dirs, ~7-20 GB each here) filled a warm
  # machine's disk before a stage once (fourteenth session): each stage starts from a clean temp root
  rm -rf "${TMPDIR:-/tmp}/pytest-of-$(id -un)" "${TMPDIR:-/tmp}"/frt_outliers_*
  echo "== $s $(date -u +%H:%M:%S)"
  stage "$s" 2>&1 | tee "$OUT/$s.log"
done
