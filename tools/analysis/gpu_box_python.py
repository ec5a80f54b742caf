"""Runs Python as if on the GPU box: only what that box has can be imported.

The GPU box (``../shared/GPU.md`` of the project, and the header of ``gpu_session.sh``) has
torch, Triton, numpy, pytest, timm, OpenCV, Pillow, matplotlib, rich and PyYAML with their
dependencies, plus the pure wheels listed in ``WHEELS=(...)`` of ``gpu_session.sh``, and nothing
else: no mmseg, mmdet, pycocotools or compiled ``mmcv.ops``. This launcher installs an import
finder that raises ImportError for

* pycocotools, mmseg, mmdet and ``mmcv.ops`` (always), and
* with ``--only-gpu-box``, every installed distribution outside that set (the wheels are taken
  without their dependencies, so a wheel missing from the list shows up as a refused import),

then runs a module (``-m pytest ...``) or a script, like ``python``. Usable where the full
environment is installed, to rehearse the GPU run (``gpu_session.sh --dry-run``) and in tests.

This file imports nothing of mmreplk: the finder must be in place before the package loads.

Examples:
    python tools/analysis/gpu_box_python.py --only-gpu-box -c 'import mmreplk.ops, mmreplk.models'
    python tools/analysis/gpu_box_python.py -m pytest --collect-only -q tests/test_ops -k cuda
"""
from __future__ import annotations

import importlib.abc
import importlib.metadata
import os
import re
import runpy
import sys
from pathlib import Path

#: Never on the GPU box; the benchmark and the CUDA tests must not need them.
REFUSED = ('pycocotools', 'mmseg', 'mmdet', 'mmcv.ops')

#: Import names of what the GPU box has installed (GPU.md), with their dependencies.
GPU_BOX_MODULES = ('torch', 'triton', 'numpy', 'pytest', 'timm', 'cv2', 'PIL', 'matplotlib',
                   'rich', 'yaml')

#: Wheels whose import name differs from the distribution name.
WHEEL_MODULES = {'mmcv-lite': 'mmcv'}

SESSION_SCRIPT = Path(__file__).with_name('gpu_session.sh')


def session_wheels(script: Path = SESSION_SCRIPT) -> list[str]:
    """The distributions of ``WHEELS=(...)`` in ``gpu_session.sh``, versions stripped."""
    match = re.search(r'^WHEELS=\(([^)]*)\)', script.read_text(), re.M)
    if match is None:
        raise ValueError(f'no WHEELS=(...) line in {script}')
    return [re.split(r'[=<>!~]', word)[0] for word in match.group(1).split()]


def _normalize(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def _requirements(dist: str) -> list[str]:
    try:
        requires = importlib.metadata.requires(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    # Dependencies that apply whatever extras: no marker, or a marker without 'extra'.
    return [re.split(r'[\s;<>=!~\[(]', req, maxsplit=1)[0] for req in requires
            if ';' not in req or 'extra' not in req.split(';', 1)[1]]


def allowed_distributions(wheels: list[str]) -> set[str]:
    """The GPU box's distributions: its packages' closure over their requirements, plus the
    wheels themselves (not their requirements: those must be on the box or in the list)."""
    owners = importlib.metadata.packages_distributions()
    todo = [dist for module in GPU_BOX_MODULES for dist in owners.get(module, [])]
    allowed: set[str] = set()
    while todo:
        dist = _normalize(todo.pop())
        if dist not in allowed:
            allowed.add(dist)
            todo += _requirements(dist)
    return allowed | {_normalize(WHEEL_MODULES.get(w, w)) for w in wheels} | {
        _normalize(w) for w in wheels}


class RefusingFinder(importlib.abc.MetaPathFinder):
    """Raises ModuleNotFoundError for modules the GPU box does not have.

    Args:
        allowed (set[str] | None): Normalized distribution names that may be imported from;
            None allows every distribution (only :data:`REFUSED` is refused).
    """

    def __init__(self, allowed: set[str] | None = None) -> None:
        self.allowed = allowed
        self.owners = {module: {_normalize(d) for d in dists}
                       for module, dists in importlib.metadata.packages_distributions().items()}

    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == name or fullname.startswith(name + '.') for name in REFUSED):
            raise ModuleNotFoundError(f'{fullname} is not on the GPU box (refused by '
                                      f'{Path(__file__).name})', name=fullname)
        top = fullname.partition('.')[0]
        dists = self.owners.get(top)
        if self.allowed is not None and dists and not dists & self.allowed:
            raise ModuleNotFoundError(
                f'{fullname} (from {sorted(dists)}) is not on the GPU box: neither GPU.md lists '
                f'it nor WHEELS=(...) of gpu_session.sh (refused by {Path(__file__).name})',
                name=fullname)
        return None


def main(argv: list[str]) -> None:
    only_box = argv[:1] == ['--only-gpu-box']
    argv = argv[1:] if only_box else argv
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__)
        raise SystemExit(0 if argv else 2)
    sys.meta_path.insert(0, RefusingFinder(
        allowed_distributions(session_wheels()) if only_box else None))
    # sys.path[0] as plain python sets it: the working directory for -m / -c, else the
    # script's folder (this launcher's own folder is not on the path of the code it runs).
    if argv[0] == '-m':
        sys.path[0] = os.getcwd()
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name='__main__', alter_sys=True)
    elif argv[0] == '-c':
        sys.path[0] = os.getcwd()
        sys.argv = ['-c', *argv[2:]]
        exec(compile(argv[1], '<string>', 'exec'), {'__name__': '__main__'})
    else:
        sys.path[0] = str(Path(argv[0]).resolve().parent)
        sys.argv = argv
        runpy.run_path(argv[0], run_name='__main__')


if __name__ == '__main__':
    main(sys.argv[1:])
