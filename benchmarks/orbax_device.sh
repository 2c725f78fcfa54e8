#!/usr/bin/env bash
# The jax (Orbax) cells on one lent H200: what the lead runs for issue 18 (docs/benchmarks.md, "openpi Orbax
# checkpoints"). The GPU image has JAX + orbax (and so tensorstore); JAX is kept on the CPU (JAX_PLATFORMS=cpu).
#   bash benchmarks/orbax_device.sh          # GPU tests of the jax cells (tiny, ~1 min), then the full-size run (~3-5 min)
set -u
export PYTHONUNBUFFERED=1 JAX_PLATFORMS=cpu
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
log() { echo "=== $* ($(date +%T))"; }
nvidia-smi -L
python3 -c "import importlib.metadata as m, torch, tensorstore, orbax.checkpoint, jax; print('torch', torch.__version__, 'tensorstore', \
m.version('tensorstore'), 'jax', jax.__version__)"
log "GPU tests (hopper + thor by override)"; python3 -m pytest -m gpu -q test/gpu/test_orbax_gpu.py 2>&1 | tail -4
log "full size"; timeout 360 python3 benchmarks/orbax_load.py --out "$OUT" 2>&1 | tail -8
