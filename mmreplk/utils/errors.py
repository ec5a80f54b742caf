"""Errors every layer may raise for a problem the user can fix, and optional-package imports.

Every such error derives from :class:`UserError`, the one class the tools turn into a
message line and exit status 1 (:func:`mmreplk.apis.exit_on_user_error`); any other exception
is a bug and keeps its traceback. The subclasses say what kind of problem it is and, where a
caller may want to catch it as such, also derive from the matching built-in error.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType


class UserError(Exception):
    """A problem the user can fix; its message names the problem and the fix."""


class ToolError(UserError, RuntimeError):
    """A bad flag or argument, or a request the tool cannot carry out as asked."""


class ConfigError(ToolError, ValueError):
    """A config, or an option applied to it, does not fit what was asked of it.

    Also a ``ValueError``: the value the user gave is the problem.
    """


class MissingDependencyError(ToolError, ImportError):
    """An optional package that the requested feature needs is not installed."""


class MissingFileError(ToolError, FileNotFoundError):
    """A file or folder the user named does not exist: the same class and message in every tool.

    Args:
        what (str): What the path should be, e.g. 'checkpoint file'; the whole message when
            ``path`` is None.
        path (str | os.PathLike, optional): The path given. Defaults to None.
    """

    def __init__(self, what: str, path: str | os.PathLike | None = None) -> None:
        # mmengine's registry re-raises an error of a constructor as type(err)(message), with
        # one argument: that must give the same class, not a TypeError.
        super().__init__(what if path is None else f'{what} not found: {os.fspath(path)}')


def require_file(path: str | os.PathLike, what: str = 'checkpoint file') -> str:
    """Returns ``path`` as a string if it is a file, else raises :class:`MissingFileError`.

    Args:
        path (str | os.PathLike): The path given.
        what (str): What it should be, for the message. Defaults to 'checkpoint file'.

    Returns:
        str: ``path``.
    """
    if not os.path.isfile(path):
        raise MissingFileError(what, path)
    return os.fspath(path)


def require_dir(path: str | os.PathLike, what: str) -> str:
    """Returns ``path`` as a string if it is a folder, else raises :class:`MissingFileError`.

    Args:
        path (str | os.PathLike): The path given.
        what (str): What it should be, for the message, e.g. 'input folder'.

    Returns:
        str: ``path``.
    """
    if not os.path.isdir(path):
        raise MissingFileError(what, path)
    return os.fspath(path)


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
