#!/usr/bin/env bash
# Creates (or refreshes) the project-local virtual environment `.venv` with the whole stack.
# Idempotent: a second run only checks that everything is installed. mmcv is compiled once from
# its sdist with the C++ ops (about 25 minutes on 2 cores); pip keeps the wheel in its cache, so a
# fresh clone on the same machine reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MMREPLK_VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip "$@"; }

stamp="$VENV/.mmreplk-stack"
want=$(cat requirements.txt setup.cfg | sha1sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import mmcv.ops, mmseg, mmdet, mmreplk" 2>/dev/null; then
  echo "[setup] environment is up to date ($VENV)"
  exit 0
fi

pip install -q --upgrade pip wheel
# Build prerequisites of mmcv: its setup.py imports torch (hence --no-build-isolation) and
# pkg_resources (setuptools < 80.9, see requirements.txt); ninja + psutil make the build use every core.
pip install -q "setuptools<80.9" ninja psutil "numpy>=2,<3" torch==2.13.0 opencv-python-headless
if ! "$VENV/bin/python" -c "import mmcv.ops" 2>/dev/null; then
  echo "[setup] building mmcv 2.1.0 with ops (first time only: ~25 min on 2 cores)"
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    pip install --no-build-isolation "mmcv==2.1.0"
fi
pip install -q -r requirements.txt
pip install -q --no-build-isolation --no-deps -e .
echo "$want" > "$stamp"
echo "[setup] done: $("$VENV/bin/python" -c 'import torch, mmcv, mmseg, mmdet, mmengine; print(f"torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, mmseg {mmseg.__version__}, mmdet {mmdet.__version__}")')"
