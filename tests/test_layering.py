"""The package layering docs/development.md states ("How the code is organised"): no module imports from
a layer above its own, and no module outside the task adapters asks which task a config is."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / 'mmreplk'

#: Layer of each subpackage, bottom first. A module may import from its own subpackage and from
#: lower layers only; subpackages that share a layer do not import each other.
LAYERS = {
    'utils': 0,
    'ops': 1,
    'models': 2,
    'datasets': 3,
    'engine': 3,
    'tasks': 4,
    'apis': 5,
    'deployment': 6,
    'analysis': 6,
}
#: Strings that name a task; comparing against them is the task adapters' job.
TASK_NAMES = {'mmseg', 'mmdet', 'segmentation', 'detection'}


def _modules():
    return sorted(path for path in PACKAGE.rglob('*.py') if path.parent != PACKAGE)


def _subpackage(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0]


def _imported_subpackages(path: Path):
    """(line, subpackage) for every import of ``mmreplk.<subpackage>``, relative ones included."""
    depth = len(path.relative_to(PACKAGE).parts) - 1
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = path.relative_to(PACKAGE).parts[:depth - node.level + 1]
                module = '.'.join(('mmreplk', *anchor, *([node.module] if node.module else [])))
            else:
                module = node.module or ''
            names = [module] if module.count('.') else [f'{module}.{a.name}' for a in node.names]
        for name in names:
            parts = name.split('.')
            if parts[0] == 'mmreplk' and len(parts) > 1 and parts[1] in LAYERS:
                yield node.lineno, parts[1]


def test_every_subpackage_has_a_layer():
    found = {_subpackage(path) for path in _modules()}
    assert found == set(LAYERS)


@pytest.mark.parametrize('path', _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_layer_above_or_beside(path):
    own = _subpackage(path)
    wrong = [f'line {line}: {own} (layer {LAYERS[own]}) imports {target} (layer {LAYERS[target]})'
             for line, target in _imported_subpackages(path)
             if target != own and LAYERS[target] >= LAYERS[own]]
    assert not wrong, wrong


def _task_name_comparisons(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.Dict):
            operands = list(node.keys)
        elif isinstance(node, ast.Match):
            operands = [case.pattern for case in node.cases]
        else:
            continue
        for operand in operands:
            for leaf in ast.walk(operand) if operand is not None else ():
                if isinstance(leaf, ast.Constant) and leaf.value in TASK_NAMES:
                    yield node.lineno, leaf.value


@pytest.mark.parametrize('path', [p for p in _modules() if _subpackage(p) != 'tasks']
                         + sorted((PACKAGE.parent / 'tools').rglob('*.py')),
                         ids=lambda p: p.name)
def test_no_task_name_branch_outside_the_adapters(path):
    found = list(_task_name_comparisons(ast.parse(path.read_text())))
    assert not found, f'{path}: compares with task names at {found}'


def test_the_check_sees_a_task_branch():
    tree = ast.parse("if cfg.default_scope == 'mmseg':\n    pass\nx = {'mmdet': 1}\n")
    assert [name for _, name in _task_name_comparisons(tree)] == ['mmseg', 'mmdet']
