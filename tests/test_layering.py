"""The package layering the README states ("How the code is organised"): no module imports from
a layer above its own, and no module outside the task adapters asks which task a config is."""
import ast
import inspect
import re
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


def _source_words(paths) -> dict[str, set[str]]:
    return {path.name: set(re.findall(r'[\w./]+', path.read_text())) for path in paths}


def test_utils_knows_no_model():
    """The bottom layer imports nothing of ``models`` and names none of its backbones, arch
    names or brick parameters (those live beside each backbone)."""
    import mmreplk.models.backbones as backbones
    from mmreplk.models.backbones.replknet_weights import ARCH_SETTINGS
    from mmreplk.models.reparameterize import FOLDABLE_BRICKS
    utils = sorted((PACKAGE / 'utils').glob('*.py'))
    imports = [f'{path.name} line {line}' for path in utils
               for line, target in _imported_subpackages(path) if target == 'models']
    assert not imports, imports
    names = {name for name in backbones.__all__ if inspect.isclass(getattr(backbones, name))}
    names |= set(ARCH_SETTINGS)
    names |= {key.split('.')[0] for brick in FOLDABLE_BRICKS for key in brick.deploy_only_keys}
    assert {'RepLKNet', '31B', 'lkb_reparam'} <= names
    found = {file: sorted(words & names) for file, words in _source_words(utils).items()
             if words & names}
    assert not found, f'utils names the model: {found}'


def test_engine_knows_no_tool():
    """The command line is composed by the command-line layer: ``engine`` names no tool."""
    tools = {path.name for path in (PACKAGE.parent / 'tools').rglob('*')
             if path.suffix in ('.py', '.sh')}
    assert {'train.py', 'dist_train.sh'} <= tools
    found = {file: sorted(words & tools | {w for w in words if w.startswith('tools/')})
             for file, words in _source_words(sorted((PACKAGE / 'engine').glob('*.py'))).items()}
    found = {file: words for file, words in found.items() if words}
    assert not found, f'engine names tools: {found}'


#: Clock reads a measurement may rest on; only mmreplk/utils/timing.py makes them.
CLOCK_READS = {'time.perf_counter', 'time.perf_counter_ns', 'time.time', 'time.time_ns',
               'time.monotonic', 'time.monotonic_ns', 'time.process_time', 'torch.cuda.Event'}
CLOCK_SITE = PACKAGE / 'utils' / 'timing.py'


def _clock_reads(tree: ast.AST):
    """(line, name) for every use of a clock of :data:`CLOCK_READS`, also through ``from time
    import perf_counter`` or ``import time as t``."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({a.asname or a.name: a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            aliases.update({a.asname or a.name: f'{node.module}.{a.name}' for a in node.names})
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Name)):
            parts = []
            leaf = node
            while isinstance(leaf, ast.Attribute):
                parts.insert(0, leaf.attr)
                leaf = leaf.value
            if isinstance(leaf, ast.Name):
                name = '.'.join([aliases.get(leaf.id, leaf.id), *parts])
                if name in CLOCK_READS:
                    yield node.lineno, name


@pytest.mark.parametrize('path', [p for p in _modules() if p != CLOCK_SITE],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_one_clock_site(path):
    found = sorted(set(_clock_reads(ast.parse(path.read_text()))))
    assert not found, (f'{path.relative_to(PACKAGE)} reads the clock at {found}: measure '
                       'through mmreplk/utils/timing.py')


def test_the_clock_check_sees_every_spelling():
    tree = ast.parse('import time\nimport time as t\nfrom time import perf_counter as pc\n'
                     'import torch\na = time.perf_counter()\nb = t.monotonic()\nc = pc()\n'
                     'd = torch.cuda.Event(enable_timing=True)\ne = time.sleep(0)\n')
    assert sorted(set(_clock_reads(tree))) == [(5, 'time.perf_counter'), (6, 'time.monotonic'),
                                               (7, 'time.perf_counter'),
                                               (8, 'torch.cuda.Event')]
