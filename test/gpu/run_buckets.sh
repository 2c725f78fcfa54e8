#!/usr/bin/env bash
# Prefix-length buckets and the kernel count on the device (issue 17), in one call:
# 1. test/gpu/test_prompt_buckets_gpu.py on the cells this GPU runs (hopper, thor by override on an H200). Record from
#    the -s output: "<cell> exact n=.. bucket=..: max|diff| .." (goal 0: bit-identical), the compact layout's cosines,
#    "<cell>: buckets (64, 128, 200), X MiB beside the full length", "<cell> bucket N: DOT {...}, profiler kernels K".
# 2. benchmarks/latency.py at openpi's default 200 prompt slots, 2 views, horizon 50: the replay of every bucket's
#    graph (64 / 128 / 200 slots) and its kernels, exact layout then compact, and the buckets off (one graph, 200
#    slots: the code before this change) in the same process, and finer buckets (every 16 slots to 128, then 160)
#    for the replay-vs-slots curve. Record the markdown tables (card and date).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -m pytest -m gpu test/gpu/test_prompt_buckets_gpu.py test/gpu/test_cuda_graph.py -q -s -rA 2>&1 \
  | tee "${OUT:-.}/buckets_tests.log" | tail -40   # the whole log: a failure's assertion is above the tail
python3 benchmarks/latency.py --views 2 --horizons 50 --max-token-len 200 --prompt-buckets --count-kernels \
  --no-baseline --variants buckets buckets-compact buckets-off buckets-fine --out "${OUT:-.}" 2>&1 | tail -35
