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
        # No source: refuse, rather than let the next finder import an
        # extension left without its source (a module renamed or deleted).
        raise ModuleNotFoundError(f"No module named {name!r} ({ENV}=1 imports sources only, "
                                  "and there is none)", name=name)


def install() -> None:
    """Import ustack's submodules from source from now on (idempotent)."""
    if not any(isinstance(f, SourceOnlyFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, SourceOnlyFinder())


# Seconds an extension may be older than its source and still count as built
# from it: an install (a wheel, pip) writes both within moments, in any order.
STALE_AFTER: float = 30.0


def stale_modules(package_dir: str, slack: float = STALE_AFTER) -> list[str]:
    """Sources under ``package_dir`` newer than the compiled module beside
    them by more than ``slack`` seconds: edited since the last compile (make
    install and make compile touch every extension they build)."""
    stale = []
    for root, _dirs, files in os.walk(package_dir):
        for f in files:
            if f.endswith(".so"):
                source = os.path.join(root, f.split(".", 1)[0] + ".py")
                try:
                    newer = os.stat(source).st_mtime - os.stat(os.path.join(root, f)).st_mtime
                except OSError:
                    continue
                if newer > slack:
                    stale.append(os.path.relpath(source, os.path.dirname(package_dir)))
    return sorted(stale)


def warn_if_stale(package_dir: str) -> None:
    """One line on stderr when compiled modules may be older than their
    sources: the old code would run, silently."""
    stale = stale_modules(package_dir)
    if stale:
        more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        print(f"ustack: compiled modules older than their sources: {', '.join(stale[:3])}{more}"
              f" (make compile rebuilds them; {ENV}=1 runs the sources)", file=sys.stderr)


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
