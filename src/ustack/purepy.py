"""Which build runs: the compiled modules, or the pure-Python sources beside them.

``make install`` compiles the hot modules with mypyc into C extensions next
to their ``.py`` files (setup.py), and Python imports an extension before a
source file of the same name.  ``USTACK_PURE=1`` in the environment selects
the sources instead, for debugging (a traceback with lines, pdb, coverage,
patching): ``ustack/__init__.py`` then puts ``SourceOnlyFinder`` first on
``sys.meta_path`` before any other ustack module is imported.

This module and ``ustack/__init__.py`` are never compiled.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType

ENV: str = "USTACK_PURE"
_SOURCE_LOADERS = [(importlib.machinery.SourceFileLoader,
                    importlib.machinery.SOURCE_SUFFIXES)]


def pure_requested() -> bool:
    """True when the environment asks for the pure-Python modules."""
    return os.environ.get(ENV, "") not in ("", "0")


class SourceOnlyFinder:
    """A meta path finder for ``ustack.*`` that sees ``.py`` files only."""

    def __init__(self) -> None:
        self._finders: dict[str, importlib.machinery.FileFinder] = {}

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not name.startswith("ustack.") or path is None:
            return None
        for entry in path:
            finder = self._finders.get(entry)
            if finder is None:
                finder = self._finders[entry] = importlib.machinery.FileFinder(
                    entry, *_SOURCE_LOADERS)
            spec = finder.find_spec(name, target)
            if spec is not None:
                return spec
        return None


def install() -> None:
    """Import ustack's submodules from source from now on (idempotent)."""
    if not any(isinstance(f, SourceOnlyFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, SourceOnlyFinder())


def build() -> str:
    """``"compiled"`` when the running core is the mypyc build, else ``"pure"``."""
    from ustack import stack  # the compiled build always compiles it (setup.py)

    return "pure" if (stack.__file__ or "").endswith(".py") else "compiled"


def describe() -> str:
    """The build in words, as ``ustack --version`` shows it."""
    if build() == "compiled":
        return "compiled with mypyc"
    if pure_requested():
        return f"pure Python, {ENV}=1"
    return "pure Python, not compiled (make install compiles it)"
