#!/usr/bin/env bash
# Multi-process training with torchrun: bash tools/dist_train.sh CONFIG NUM_PROCS [train.py args]
# On a CPU-only machine the processes use gloo (see mmreplk.apis.prepare_distributed).
# NNODES, NODE_RANK, MASTER_ADDR and PORT (or MASTER_PORT) select a multi-node run.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash tools/dist_train.sh CONFIG NUM_PROCS [tools/train.py options]" >&2
  exit 2
fi
CONFIG=$1
NPROCS=$2
shift 2
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --master_port="${PORT:-${MASTER_PORT:-29500}}" --nproc_per_node="$NPROCS" \
  tools/train.py "$CONFIG" --launcher pytorch "$@"
