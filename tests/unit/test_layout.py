"""The runtime package stays apart from the tools beside it.

``ustack`` is what users run; ``ustack_testbed`` and ``ustack_conform``
ship in the same distribution but depend on it, never the other way round.
``ustack conform`` reaches the runner through an entry point, so no module
of ``src/ustack`` imports a tool package: not at the top, not inside a
function, not under ``if TYPE_CHECKING:``, not with ``importlib``.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

from srcscan import RUNTIME, SRC, TOOLS, all_imports, find_modules, in_package, literal_imports


def _is_tool(module: str) -> bool:
    return any(in_package(module, tool) for tool in TOOLS)


def tool_imports(src: Path = SRC) -> list[str]:
    """``module:line: imported`` for every import of a tool package in the runtime.

    ``srcscan.all_imports`` sees every import statement, in function bodies
    and ``if TYPE_CHECKING:`` blocks as well as at the top; on top of those,
    ``importlib.import_module("...")`` and ``__import__("...")`` with a
    literal name.
    """
    found = [(imp.importer, imp.line, imp.module) for imp in all_imports(src)
             if in_package(imp.importer, RUNTIME) and _is_tool(imp.module)]
    for name, path in find_modules(src, [RUNTIME]).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found += [(name, line, imported) for line, imported in literal_imports(tree)
                  if _is_tool(imported)]
    return [f"{name}:{line}: {imported}" for name, line, imported in sorted(found)]


def test_the_runtime_imports_no_tool_package() -> None:
    assert len(find_modules(SRC, [RUNTIME])) > 50, f"not the ustack package? {SRC / RUNTIME}"
    offenders = tool_imports()
    assert not offenders, "src/ustack imports a tool package:\n" + "\n".join(offenders)


def test_the_check_finds_every_kind_of_import(tmp_path: Path) -> None:
    """The check above can fail: each way of importing a tool is caught."""
    files = {
        "ustack/__init__.py": "",
        "ustack/wire/__init__.py": "",
        "ustack/wire/tcp.py": "",
        "ustack_testbed/__init__.py": "",
        "ustack_testbed/netns.py": "",
        "ustack_conform/__init__.py": "",
        "ustack_conform/script.py": "",
        "ustack_conform/runner.py": "",
        "ustack/mod.py": """
            import os
            import ustack_testbed
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from ustack_conform.script import Script
            def f():
                import ustack_testbed.netns as n
                from ustack_conform import runner
                import importlib
                importlib.import_module("ustack_conform.runner")
                __import__("ustack_testbed")
            from ustack.wire import tcp
            import ustack_testbedx
            from . import ustack_conform
        """,
        # A tool importing the runtime is the allowed direction.
        "ustack_conform/uses.py": "from ustack.wire import tcp\n",
    }
    for rel, source in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(source), encoding="utf-8")
    assert tool_imports(tmp_path) == [
        "ustack.mod:3: ustack_testbed",
        "ustack.mod:6: ustack_conform.script",
        "ustack.mod:8: ustack_testbed.netns",
        "ustack.mod:9: ustack_conform.runner",  # from ustack_conform import runner
        "ustack.mod:11: ustack_conform.runner",
        "ustack.mod:12: ustack_testbed",
    ]


# Small modules named for what they hold: none in the runtime grows past
# 800 lines (a module that does is two things; split it).  The one limit for
# every floor, the API's and the command line's included.
MAX_MODULE_LINES = 800


def test_no_runtime_module_is_larger_than_800_lines() -> None:
    sizes = {name: len(path.read_text().splitlines())
             for name, path in find_modules(SRC, [RUNTIME]).items()}
    large = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not large, f"modules over {MAX_MODULE_LINES} lines (split them): {large}"
