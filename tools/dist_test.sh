#!/usr/bin/env bash
# Multi-process testing with torchrun:
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py args]
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [tools/test.py options]" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROCS=$3
shift 3
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --master_port="${PORT:-29500}" --nproc_per_node="$NPROCS" \
  tools/test.py "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
