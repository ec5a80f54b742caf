#!/usr/bin/env bash
# The GPU checks in one call, for a GPU box without package access (one H100/H200: at most
# 8 minutes, every first-use compile included, then a last part of UniRepLKNet rows under its
# own limit, 1 minute by default, that a shorter slot may lose). Parts run in the order below,
# each under its own time limit (seconds, below); a part that fails or runs out of time is
# recorded and the next one runs. Everything goes to $OUT (default work_dirs/gpu_session) line by
# line as it happens, so a kill at any point keeps what was done:
#   session.md                  one line per part started / finished (rc, seconds)
#   env.txt                     GPU, driver, torch / CUDA / cuDNN / Triton versions
#   <part>.log                  everything the part printed (pytest -v, benchmark log)
#   junit_<part>.xml            pytest's junit report of a test part
#   <section>.md, <section>_*.png   the benchmark report of a section and its figures
#   unireplknet.md, unireplknet_*.png  the UniRepLKNet-T/S part's report and figures
#
# The GPU box has torch, Triton, numpy, pytest, timm, OpenCV, Pillow, matplotlib, rich and
# PyYAML; these pure wheels complete it (tests/test_analysis/test_gpu_session.py checks that
# mmreplk.ops, mmreplk.models and the benchmark import with nothing else):
WHEELS=(mmengine==0.10.7 mmcv-lite==2.1.0 addict==2.4.0 yapf termcolor platformdirs)
# Where pip works, in the repository root (keeps them in .whl/, which git ignores):
#   bash tools/analysis/gpu_session.sh --fetch-wheels
# then, with the device tool: run(command="bash tools/analysis/gpu_session.sh",
#   carry=[".whl"], timeout_s=570)
# Rehearsal on a CPU (Triton interpreter, tiny shapes, every part, section and Table-1 cell;
# prints the expected number of Triton compiles of the real run; run by the test suite):
#   bash tools/analysis/gpu_session.sh --dry-run
set -uo pipefail
cd "$(dirname "$0")/../.."

# Time limits per part (seconds); MMREPLK_GPU_<PART>_S overrides one. Sum of the GPU run's: 480 s.
LIMIT_SETUP=${MMREPLK_GPU_SETUP_S:-30}
LIMIT_TESTS_NEW_KERNELS=${MMREPLK_GPU_TESTS_NEW_KERNELS_S:-100}
LIMIT_TESTS_CUDA=${MMREPLK_GPU_TESTS_CUDA_S:-60}
LIMIT_BACKBONE=${MMREPLK_GPU_BACKBONE_S:-130}
LIMIT_TABLE1=${MMREPLK_GPU_TABLE1_S:-130}
LIMIT_INFERENCE=${MMREPLK_GPU_INFERENCE_S:-30}
LIMIT_COMPILES=${MMREPLK_GPU_COMPILES_S:-40}  # the dry run's count of the real run's compiles
# The last part, outside the 480 s: UniRepLKNet-T/S train step (fp32) and folded inference.
LIMIT_UNIREPLKNET=${MMREPLK_GPU_UNIREPLKNET_S:-60}
# The backbone rows of the benchmark parts (names of benchmark_gpu.py --backbones).
DEFAULT_ROWS=(RepLKNet-31B)
UNIREPLKNET_ROWS=(UniRepLKNet-T UniRepLKNet-S)
# The CUDA tests of tests/test_ops (names containing cuda); those of the kernels no GPU has run
# yet go first, with CUDA_LAUNCH_BLOCKING=1 so a fault is reported at the launch that made it.
NEW_KERNEL_TESTS='cuda and (tc_families or triton_banded or triton_toeplitz)'
OTHER_CUDA_TESTS='cuda and not (tc_families or triton_banded or triton_toeplitz)'

mode=run
case "${1:-}" in
  '') ;;
  --dry-run) mode=dry ;;
  --fetch-wheels)
    exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform any -d .whl "${WHEELS[@]}" ;;
  *) echo "usage: bash $0 [--dry-run | --fetch-wheels]" >&2; exit 2 ;;
esac

out=${OUT:-work_dirs/gpu_session}
mkdir -p "$out"
report=$out/session.md
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
# One fresh Triton cache for the whole session: the backbone's first use (measured first, after
# the tests, whose small pinned configs it does not share) is that of a fresh machine, and the
# later parts reuse what earlier ones compiled.
TRITON_CACHE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mmreplk-triton.XXXXXX")
export TRITON_CACHE_DIR
site=
trap 'rm -rf "$TRITON_CACHE_DIR" ${site:+"$site"}' EXIT
if [ "$mode" = dry ]; then
  # The same parts on the CPU: Triton kernels interpreted, the GPU box's imports enforced, the
  # limits multiplied (MMREPLK_GPU_DRY_FACTOR, default 3) for a small shared CPU machine.
  for limit in ${!LIMIT_@}; do declare "$limit=$((${!limit} * ${MMREPLK_GPU_DRY_FACTOR:-3}))"; done
  export TRITON_INTERPRET=1
  py=("${PYTHON:-python3}" tools/analysis/gpu_box_python.py --only-gpu-box)
  device=(--device cpu --dry-run)
else
  py=("${PYTHON:-python3}")
  device=(--device cuda)
fi

note() { echo "$*" | tee -a "$report"; }

# part NAME LIMIT COMMAND...: runs COMMAND under its limit (SIGINT first, so pytest still writes
# its junit report and the benchmark its last lines; SIGKILL 10 s later), output to NAME.log.
part() {
  local name=$1 limit=$2 start=$SECONDS rc status
  shift 2
  note "- $(date -u +%H:%M:%S) $name: started (limit $limit s)"
  timeout -s INT -k 10 "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=passed ;;
    124|137) status="stopped at its time limit"; failures=$((failures + 1)) ;;
    *) status=failed; failures=$((failures + 1)) ;;
  esac
  note "- $(date -u +%H:%M:%S) $name: $status (rc=$rc) after $((SECONDS - start)) s"
  if [[ $name == tests_* ]]; then
    note "  $(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|deselected|error)|no tests ran' \
      "$out/$name.log" | tail -1)"
  fi
  return 0
}

tests() {  # tests NAME LIMIT K-EXPRESSION [ENV=VALUE...]
  local name=$1 limit=$2 select=$3
  shift 3
  part "$name" "$limit" env "$@" "${py[@]}" -m pytest tests/test_ops -v -p no:cacheprovider \
    -m 'not slow' -k "$select" -rfEs --durations=10 --junitxml="$out/junit_$name.xml" \
    -o junit_family=xunit2
}

bench() {  # bench SECTION LIMIT [ARGS...]
  local section=$1 limit=$2
  shift 2
  part "$section" "$limit" "${py[@]}" tools/analysis/benchmark_gpu.py "${device[@]}" \
    --sections "$section" --out "$out/$section.md" "$@"
}

failures=0
: >"$report"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
note "# mmreplk GPU session ($mode), $(date -u +%F) UTC, commit $commit"
start=$SECONDS

# setup: the wheels into a fresh folder (real run), then what the box is.
if [ "$mode" = run ] && compgen -G '.whl/*.whl' >/dev/null; then
  site=$(mktemp -d "${TMPDIR:-/tmp}/mmreplk-site.XXXXXX")
  timeout "$LIMIT_SETUP" python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --target "$site" .whl/*.whl >"$out/setup_wheels.log" 2>&1 \
    && export PYTHONPATH=$PYTHONPATH:$site \
    || note "- wheels: pip install failed (see setup_wheels.log)"
elif [ "$mode" = run ]; then
  note "- wheels: no .whl/ here; mmengine and mmcv-lite must already be importable"
fi
part setup "$LIMIT_SETUP" bash -c '
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
    || echo "nvidia-smi: none"
  "$@" -c "import torch, triton
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"cudnn\",
      torch.backends.cudnn.version(), \"triton\", triton.__version__, \"gpu\",
      torch.cuda.get_device_name() if torch.cuda.is_available() else None)
import mmreplk.ops, mmreplk.models, mmreplk.analysis.gpu_benchmark
print(\"import mmreplk: ok\")"
  ' setup "${py[@]}"
cp "$out/setup.log" "$out/env.txt"

if [ "$mode" = dry ]; then
  # Every backbone of the session, the UniRepLKNet part included (one Triton cache for all).
  part compiles "$LIMIT_COMPILES" "${py[@]}" tools/analysis/benchmark_gpu.py --count-compiles \
    --backbones "${DEFAULT_ROWS[@]}" "${UNIREPLKNET_ROWS[@]}"
  note "  $(grep -E '^expected Triton compiles' "$out/compiles.log" | tail -1)"
fi
tests tests_new_kernels "$LIMIT_TESTS_NEW_KERNELS" "$NEW_KERNEL_TESTS" CUDA_LAUNCH_BLOCKING=1
tests tests_cuda "$LIMIT_TESTS_CUDA" "$OTHER_CUDA_TESTS"
bench backbone "$LIMIT_BACKBONE" --keep-triton-cache --backbones "${DEFAULT_ROWS[@]}"
bench table1 "$LIMIT_TABLE1" --keep-triton-cache
bench inference "$LIMIT_INFERENCE" --keep-triton-cache --backbones "${DEFAULT_ROWS[@]}"
# Last, so the parts above keep their time whatever this one takes.
part unireplknet "$LIMIT_UNIREPLKNET" "${py[@]}" tools/analysis/benchmark_gpu.py "${device[@]}" \
  --sections backbone inference --precisions fp32 --backbones "${UNIREPLKNET_ROWS[@]}" \
  --out "$out/unireplknet.md" --keep-triton-cache
note "- session: $((SECONDS - start)) s in all, $failures part(s) failed or stopped"

echo
for section in backbone table1 inference unireplknet; do
  [ -f "$out/$section.md" ] && grep -v '^<!--' "$out/$section.md"
done
[ "$failures" -eq 0 ]
