"""README.md and docs/ against the code: links, paths, configs, tool flags and the quick start.

Everything is read from the code itself (each tool's argparse parser, the configs through
mmengine, ``.ci/run``), never from a copy, so a renamed flag or a moved file fails here.
"""
import argparse
import re
import shlex
from functools import lru_cache
from pathlib import Path

import pytest
from helpers import load_tool
from mmengine.config import Config

ROOT = Path(__file__).parents[1]
README = ROOT / 'README.md'
PAGES = [README, *sorted((ROOT / 'docs').glob('*.md'))]
README_MAX_LINES = 250

# Paths into this repository's own tree; work_dirs/, data/, checkpoints/ ... are what a user makes.
REPO_PATH = re.compile(r'(?<![\w./~$-])((?:configs|tools|mmreplk|tests|docs|\.ci)/[\w./-]*\w/?)')
CONFIG_NAME = re.compile(r'(?<![\w./-])((?:upernet|cascade_mask_rcnn)_replknet\w*\.py)\b')
TEST_FILE = re.compile(r'(?<![\w./-])(test_\w+\.py)\b')
LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)')
CODE_BLOCK = re.compile(r'^```[^\n]*\n(.*?)^```', re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r'`([^`]+)`')  # a span may wrap onto the next line, as Markdown allows
# The shell wrappers pass their options on to these tools.
WRAPPED = {'tools/dist_train.sh': 'train.py', 'tools/slurm_train.sh': 'train.py',
           'tools/dist_test.sh': 'test.py'}


def _text(page: Path) -> str:
    return page.read_text(encoding='utf-8')


def _page_ids(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


def _anchors(page: Path) -> set[str]:
    text = CODE_BLOCK.sub('', _text(page))
    return {_slug(match) for match in re.findall(r'^#{1,6} (.+)$', text, flags=re.MULTILINE)}


def _inline_code(text: str) -> list[str]:
    return [span.replace('\n', ' ') for span in INLINE_CODE.findall(CODE_BLOCK.sub('', text))]


def _code(text: str) -> list[str]:
    """Code blocks and inline code spans, where paths, configs and commands are written."""
    return CODE_BLOCK.findall(text) + _inline_code(text)


def _command_lines(text: str) -> list[str]:
    """Shell commands shown: code-block lines (continuations joined) and inline code spans."""
    lines = []
    for block in CODE_BLOCK.findall(text):
        lines += block.replace('\\\n', ' ').splitlines()
    return lines + _inline_code(text)


@lru_cache(maxsize=None)
def _tool_options(tool: str) -> frozenset[str]:
    """The option strings of a tool's parser, read by running its own ``parse_args``."""

    class Captured(Exception):
        pass

    def capture(parser, args=None, namespace=None):
        raise Captured(parser)

    module = load_tool(tool)
    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = capture
    try:
        module.parse_args([])
    except Captured as captured:
        parser = captured.args[0]
    finally:
        argparse.ArgumentParser.parse_args = original
    return frozenset(parser._option_string_actions)


@pytest.mark.parametrize('page', PAGES, ids=_page_ids)
def test_relative_links_and_their_anchors_exist(page):
    text = CODE_BLOCK.sub('', _text(page))
    for link in (a or b for a, b in LINK.findall(text)):
        if re.match(r'[a-z]+:', link):
            continue  # an address on the web
        path, _, anchor = link.partition('#')
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f'{_page_ids(page)}: link to {link}: no such file'
        if anchor and target.suffix == '.md':
            assert anchor in _anchors(target), (
                f'{_page_ids(page)}: link to {link}: no heading with that anchor in {target.name}')


@pytest.mark.parametrize('page', PAGES, ids=_page_ids)
def test_every_repository_path_named_exists(page):
    names = set()
    for code in _code(_text(page)):
        names.update(REPO_PATH.findall(code))
    missing = [name for name in sorted(names) if not (ROOT / name).exists()]
    assert not missing, f'{_page_ids(page)} names files that do not exist: {missing}'

    tests = {name for code in _code(_text(page)) for name in TEST_FILE.findall(code)}
    known = {path.name for path in (ROOT / 'tests').rglob('test_*.py')}
    assert tests <= known, f'{_page_ids(page)} names tests that do not exist: {tests - known}'


def _configs_named() -> list[Path]:
    found = set()
    for page in PAGES:
        for code in _code(_text(page)):
            found.update(path for path in REPO_PATH.findall(code)
                         if path.startswith('configs/') and path.endswith('.py'))
            for name in CONFIG_NAME.findall(code):
                matches = list((ROOT / 'configs').rglob(name))
                assert matches, f'{_page_ids(page)} names config {name}, not in configs/'
                found.update(str(match.relative_to(ROOT)) for match in matches)
    return sorted(ROOT / path for path in found)


@pytest.mark.parametrize('config', _configs_named(), ids=lambda path: path.name)
def test_every_config_named_loads(config):
    cfg = Config.fromfile(str(config))
    if '_base_' not in config.parts:
        assert 'model' in cfg and cfg.get('default_scope') in ('mmseg', 'mmdet')


def test_every_config_in_the_repository_is_in_the_model_zoo():
    # UniRepLKNet's configs have their own page, which the zoo links.
    zoo = ''.join(_text(page) for page in (ROOT / 'docs').glob('*.md')
                  if page.name in ('model_zoo.md', 'unireplknet.md'))
    leaves = [path for path in (ROOT / 'configs').rglob('*.py') if '_base_' not in path.parts]
    missing = [str(path.relative_to(ROOT)) for path in leaves
               if str(path.relative_to(ROOT / 'configs')) not in zoo]
    assert not missing, f'docs/model_zoo.md does not list {missing}'


def _tool_commands() -> list[tuple[str, str, list[str]]]:
    """(page, tool script, options shown) for every command line that runs one of our tools."""
    commands = []
    for page in PAGES:
        for line in _command_lines(_text(page)):
            line = line.split(' #')[0]
            try:
                words = shlex.split(line)
            except ValueError:
                words = line.split()
            for index, word in enumerate(words):
                tool = None
                if word in WRAPPED:
                    tool = WRAPPED[word]
                elif re.fullmatch(r'tools/[\w/]+\.py', word):
                    tool = word[len('tools/'):]
                if tool is None:
                    continue
                options = [w.split('=')[0] for w in words[index + 1:] if w.startswith('--')]
                commands.append((_page_ids(page), tool, options))
                break
    return commands


def test_the_docs_show_tool_commands():
    # Guards the parser below: a broken extraction would make the flag test pass vacuously.
    tools = {tool for _, tool, _ in _tool_commands()}
    assert {'train.py', 'test.py', 'infer.py', 'reparameterize.py', 'convert_checkpoint.py',
            'export_onnx.py'} <= tools


@pytest.mark.parametrize('page,tool,options', _tool_commands(),
                         ids=lambda value: value if isinstance(value, str) else None)
def test_every_flag_shown_exists_in_the_tools_parser(page, tool, options):
    accepted = _tool_options(tool)
    unknown = [option for option in options if option not in accepted]
    assert not unknown, f'{page}: tools/{tool} has no {unknown}; it accepts {sorted(accepted)}'


def _quick_start() -> list[str]:
    readme = _text(README)
    section = re.search(r'^## Quick start\n(.*?)^## ', readme, flags=re.MULTILINE | re.DOTALL)
    assert section, 'README has no "## Quick start" section'
    block = CODE_BLOCK.search(section.group(1))
    return [line.split('#')[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_is_the_demo_and_the_command_ci_runs():
    demo, tests = _quick_start()
    assert demo == 'bash tools/demo.sh'
    ci = [line.strip() for line in _text(ROOT / '.ci' / 'run').splitlines()
          if line.strip() and not line.lstrip().startswith('#')]
    assert tests in ci, f'.ci/run does not run the README\'s test command {tests!r}'
    assert re.search(r'^exec \S+ -m pytest', _text(ROOT / 'tools' / 'run_tests.sh'), re.MULTILINE)
    assert '.ci/run' in _text(README)


def test_readme_is_read_in_five_minutes():
    lines = _text(README).count('\n')
    assert lines <= README_MAX_LINES, f'README.md has {lines} lines (at most {README_MAX_LINES})'


def test_readme_demo_figures_are_those_of_the_demo_page():
    # The figure a demo prints is stated twice (README, get_started): both must be the same one.
    rows = [line for line in _text(README).splitlines() if line.startswith('|') and 'demo' in line]
    readme = {figure for row in rows for figure in re.findall(r'\*\*([\d.]+)\*\*', row)}
    page = set(re.findall(r'\*\*([\d.]+)\*\*', _text(ROOT / 'docs' / 'get_started.md')))
    assert len(readme) >= 3, f'README states no demo figures: {rows}'
    assert readme <= page, f'README demo figures {readme - page} are not in docs/get_started.md'
