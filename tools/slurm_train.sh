#!/usr/bin/env bash
# Training on a Slurm cluster (one task per GPU):
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py args]
# GPUS (default 8), GPUS_PER_NODE (default 8), CPUS_PER_TASK (default 5) and SRUN_ARGS tune srun.
#
# Time limit and preemption: srun asks Slurm for SIGUSR1 SIGNAL_AHEAD seconds (default 180)
# before the step's time limit (--signal). Every task then finishes its iteration, rank 0 saves a
# checkpoint of it, and the tasks exit with 138 (128 + SIGUSR1; 143 after a SIGTERM, which Slurm
# sends on preemption). Make SIGNAL_AHEAD longer than an iteration plus a checkpoint save.
# With REQUEUE=1, inside an sbatch job, such an interrupted job is put back in the queue
# (scontrol requeue) and every run of it passes --resume: it goes on from the newest intact
# checkpoint of its work dir (a first run, with none, starts from the beginning).
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
SIGNAL_AHEAD=${SIGNAL_AHEAD:-180}
REQUEUE=${REQUEUE:-0}
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RESUME=()
if [ "$REQUEUE" = 1 ]; then
  RESUME=(--resume)
fi
status=0
# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" srun -p "$PARTITION" --job-name="$JOB_NAME" \
  --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" \
  --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 --signal=USR1@"$SIGNAL_AHEAD" \
  ${SRUN_ARGS:-} \
  "$PY" -u tools/train.py "$CONFIG" --launcher slurm ${RESUME[@]+"${RESUME[@]}"} "$@" || status=$?
# 138 / 143: stopped by SIGUSR1 / SIGTERM after saving the iteration it was in.
if [ "$REQUEUE" = 1 ] && { [ "$status" = 138 ] || [ "$status" = 143 ]; }; then
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "[slurm_train] interrupted (exit $status): requeueing job $SLURM_JOB_ID," \
      "which resumes from its newest checkpoint" >&2
    scontrol requeue "$SLURM_JOB_ID"
  else
    echo "[slurm_train] interrupted (exit $status); REQUEUE=1 needs an sbatch job" \
      "(SLURM_JOB_ID is unset): run the same command again to resume" >&2
  fi
fi
exit "$status"
