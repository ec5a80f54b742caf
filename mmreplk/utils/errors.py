"""Errors every layer may raise for a problem the user can fix, and optional-package imports.

:mod:`mmreplk.apis.errors` lists which exceptions the tools report as a one-line message
instead of a traceback; the classes here are on that list.
"""
from __future__ import annotations

import importlib
from types import ModuleType


class ToolError(RuntimeError):
    """A problem the user can fix (bad flag, missing file); tools print it and exit non-zero."""


class ConfigError(ToolError, ValueError):
    """A config, or an option applied to it, does not fit what was asked of it.

    Also a ``ValueError``: the value the user gave is the problem.
    """


class MissingDependencyError(ToolError, ImportError):
    """An optional package that the requested feature needs is not installed."""


def import_optional(name: str, needed_for: str, install: str) -> ModuleType:
    """Imports an optional package, or says which feature needs it and how to install it.

    Args:
        name (str): Module to import, e.g. 'safetensors.torch'.
        needed_for (str): What needs it, e.g. 'writing safetensors'.
        install (str): How to get it, e.g. 'pip install safetensors'.

    Returns:
        ModuleType: The module.

    Raises:
        MissingDependencyError: The package is not installed.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingDependencyError(f'{needed_for} needs the {name.split(".")[0]} package: '
                                     f'{install}') from None
