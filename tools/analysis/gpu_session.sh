#!/usr/bin/env bash
# The GPU checks in one call, for a GPU box without package access (e.g. a lent H100):
# the CUDA tests of the op, then the GPU benchmark, each under its own time limit, everything
# written to $OUT (default work_dirs/gpu_session) as it goes.
#
# Where pip works, first (keep .whl/ out of git; pure wheels, no compiled ops needed):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform any -d .whl mmengine==0.10.7 mmcv-lite==2.1.0 addict==2.4.0 yapf termcolor \
#       platformdirs
# Then, on the GPU box, with .whl/ next to the checkout:
#   bash tools/analysis/gpu_session.sh            # at most 200 s + 330 s, see the limits below
# Limits (seconds): MMREPLK_GPU_TEST_S (default 200), MMREPLK_GPU_BENCH_S (default 330).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-work_dirs/gpu_session}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if compgen -G '.whl/*.whl' >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/mmreplk-site .whl/*.whl || exit 1
  export PYTHONPATH=$PYTHONPATH:/tmp/mmreplk-site
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda,
"cudnn", torch.backends.cudnn.version(), "triton", triton.__version__)'
  python3 -c 'import mmreplk.ops; print("import mmreplk: ok")'; } >"$out/env.txt" 2>&1
cat "$out/env.txt"

start=$SECONDS
timeout "${MMREPLK_GPU_TEST_S:-200}" python3 -m pytest -q -p no:cacheprovider -m 'not slow' \
  tests/test_ops -k cuda 2>&1 | tee "$out/cuda_tests.log" | tail -25
echo "[gpu_session] tests: rc=${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$out/env.txt"

start=$SECONDS
timeout "${MMREPLK_GPU_BENCH_S:-330}" python3 tools/analysis/benchmark_gpu.py \
  --out "$out/gpu_benchmark.md" >"$out/benchmark.log" 2>&1
echo "[gpu_session] benchmark: rc=$? after $((SECONDS - start)) s" | tee -a "$out/env.txt"
grep -v '^<!--' "$out/gpu_benchmark.md" 2>/dev/null | tail -80
