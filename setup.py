"""The compiled build: the hot modules of ustack compiled by mypyc into C
extensions next to their sources (everything else is in pyproject.toml).

The source stays plain typed Python; mypyc (it comes with mypy, a build
requirement) turns each listed module into a C extension that Python imports
instead of the ``.py`` beside it.  ``USTACK_PURE=1`` at run time imports the
``.py`` files instead (src/ustack/purepy.py).

Without a C compiler, or with ``USTACK_BUILD=pure`` at install time, the
install still succeeds and ustack runs as pure Python: one line says so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

# What is compiled, chosen by measurement (docs/compiled.md): the per-packet
# path and everything it calls.  A module listed here must not be imported by
# the pure-selection hook (src/ustack/purepy.py) or by ustack/__init__.py.
COMPILED = [
    "src/ustack/wire",
    "src/ustack/net",
    "src/ustack/udp",
    "src/ustack/tcp",
    "src/ustack/stack.py",
    "src/ustack/timers.py",
    "src/ustack/counters.py",
    "src/ustack/apps/services.py",
    "src/ustack/apps/http",
    "src/ustack/apps/load",
    # The flood's per-packet parts; its driver and report run per batch.
    "src/ustack/apps/flood/syn.py",
    "src/ustack/apps/flood/answers.py",
    "src/ustack/apps/cookie_tap.py",
    "src/ustack/link/rings.py",
]


def _say(line: str) -> None:
    print(f"ustack: {line}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that leaves a working pure-Python install when it cannot
    compile: any failure removes what it built (a compiled module without
    mypyc's shared runtime library beside it could not be imported)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # any compiler failure means "pure"
            for out in self._built():
                out.unlink(missing_ok=True)
            _say(f"could not compile ({type(e).__name__}: {e}); installed as pure Python")
            return
        if self.inplace:
            self._remove_orphans()

    def _built(self) -> set[Path]:
        return {Path(self.get_ext_fullpath(ext.name)).resolve() for ext in self.extensions}

    def _remove_orphans(self) -> None:
        """Extensions in src/ this build did not make: a module taken off
        COMPILED, renamed or deleted, or an older shared library.  Python
        would import them before (or instead of) the sources."""
        built = self._built()
        for path in Path("src").rglob("*.so"):
            if path.resolve() not in built:
                path.unlink()
                _say(f"removed {path}: not part of this build")


def _ext_modules() -> list[object]:
    if os.environ.get("USTACK_BUILD", "compiled") == "pure":
        _say("USTACK_BUILD=pure: installed as pure Python")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _say("mypyc is not available; installed as pure Python")
        return []
    return list(mypycify(COMPILED, opt_level="3"))


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
