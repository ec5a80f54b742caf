"""Runs a worker script under Triton's interpreter in a subprocess (TRITON_INTERPRET=1 is read
when kernels are decorated, so it must never reach the test process itself)."""
import json
import os
import subprocess
import sys
from pathlib import Path


def run_interpreter_worker(worker: Path, cases: list[dict], timeout: int = 900) -> dict:
    """The JSON object the worker prints last, given the JSON list of ``cases`` as argv[1]."""
    env = dict(os.environ, TRITON_INTERPRET='1')
    root = Path(__file__).parents[2]
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(root), env.get('PYTHONPATH')]))
    proc = subprocess.run([sys.executable, str(worker), json.dumps(cases)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
