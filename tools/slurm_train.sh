#!/usr/bin/env bash
# Training on a Slurm cluster (one task per GPU):
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py args]
# GPUS (default 8), GPUS_PER_NODE (default 8), CPUS_PER_TASK (default 5) and SRUN_ARGS tune srun.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: GPUS=8 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [tools/train.py options]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" srun -p "$PARTITION" --job-name="$JOB_NAME" \
  --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" \
  --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
  "$PY" -u tools/train.py "$CONFIG" --launcher slurm "$@"
