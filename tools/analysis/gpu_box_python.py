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
import importlib.machinery
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
REPO = Path(__file__).resolve().parents[2]


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


def box_distributions() -> set[str]:
    """The distributions the GPU box has installed: its packages and, transitively, what they
    require."""
    owners = importlib.metadata.packages_distributions()
    todo = [dist for module in GPU_BOX_MODULES for dist in owners.get(module, [])]
    found: set[str] = set()
    while todo:
        dist = _normalize(todo.pop())
        if dist not in found:
            found.add(dist)
            todo += _requirements(dist)
    return found


def wheel_distributions(wheels: list[str]) -> set[str]:
    """The wheels as distribution names (the names they are installed under here, too),
    without their requirements: those must be on the box or in the list."""
    return {_normalize(w) for w in wheels} | {_normalize(WHEEL_MODULES.get(w, w)) for w in wheels}


def _importer() -> str:
    """Top-level package of the code running the import statement (outside importlib)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(('<frozen importlib',
                                                                       __file__)):
        frame = frame.f_back
    return '' if frame is None else frame.f_globals.get('__name__', '').partition('.')[0]


def _in_checkout(name: str) -> bool:
    """Whether a top-level module is found in this checkout (mmreplk, tests, tools), which the
    GPU box has whatever distribution also claims the name (mmsegmentation ships 'tests')."""
    module = sys.modules.get(name)
    spec = module.__spec__ if module is not None else importlib.machinery.PathFinder.find_spec(
        name)
    where = spec and (spec.origin if spec.origin not in (None, 'namespace') else
                      next(iter(spec.submodule_search_locations or ()), None))
    if not where:
        return False
    path = Path(where).resolve()
    # A virtual environment inside the checkout (.venv) holds installed packages, not ours.
    return path.is_relative_to(REPO) and 'site-packages' not in path.parts


class RefusingFinder(importlib.abc.MetaPathFinder):
    """Raises ModuleNotFoundError for modules the GPU box does not have.

    Args:
        box (set[str] | None): Normalized names of the distributions the box has installed.
            Their own imports are theirs to guard (torch probes onnx, say), so only imports
            made by other code (mmreplk, the tests, the wheels) are checked. None checks
            nothing but :data:`REFUSED`.
        wheels (set[str]): Distributions of the wheel list. Defaults to none.
    """

    def __init__(self, box: set[str] | None = None, wheels: set[str] = frozenset()) -> None:
        self.box = box
        # Asked on every import: the union is taken once.
        self.allowed = None if box is None else box | wheels
        self.owners = {module: {_normalize(d) for d in dists}
                       for module, dists in importlib.metadata.packages_distributions().items()}

    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == name or fullname.startswith(name + '.') for name in REFUSED):
            raise ModuleNotFoundError(f'{fullname} is not on the GPU box (refused by '
                                      f'{Path(__file__).name})', name=fullname)
        if self.box is None:
            return None
        top = fullname.partition('.')[0]
        dists = self.owners.get(top)
        if (dists and not dists & self.allowed and not _in_checkout(top)
                and not self.owners.get(_importer(), set()) & self.box):
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
    sys.meta_path.insert(0, RefusingFinder(box_distributions(),
                                           wheel_distributions(session_wheels()))
                         if only_box else RefusingFinder())
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
