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

SRC = Path(__file__).resolve().parents[2] / "src"
RUNTIME = SRC / "ustack"
TOOLS = ("ustack_testbed", "ustack_conform")


def _is_tool(module: str) -> bool:
    return any(module == t or module.startswith(t + ".") for t in TOOLS)


def tool_imports(source: str, filename: str = "<string>") -> list[str]:
    """``line: module`` for every import of a tool package anywhere in ``source``.

    ``ast.walk`` visits every node, so imports in function bodies and in
    ``if TYPE_CHECKING:`` blocks count like the ones at the top; so do
    ``importlib.import_module("...")`` and ``__import__("...")`` with a
    literal name.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if (called in ("import_module", "__import__") and isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)):
                names = [arg.value]
        found.extend((node.lineno, n) for n in names if _is_tool(n))
    return [f"{line}: {name}" for line, name in sorted(found)]


def test_the_runtime_imports_no_tool_package() -> None:
    modules = sorted(RUNTIME.rglob("*.py"))
    assert len(modules) > 50, f"not the ustack package? {RUNTIME}"
    offenders = [f"{m.relative_to(SRC)}:{hit}"
                 for m in modules for hit in tool_imports(m.read_text(encoding="utf-8"), str(m))]
    assert not offenders, "src/ustack imports a tool package:\n" + "\n".join(offenders)


def test_the_check_finds_every_kind_of_import() -> None:
    """The check above can fail: each way of importing a tool is caught."""
    source = textwrap.dedent("""
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
    """)
    assert [hit.split(": ")[1] for hit in tool_imports(source)] == [
        "ustack_testbed",
        "ustack_conform.script",
        "ustack_testbed.netns",
        "ustack_conform",
        "ustack_conform.runner",
        "ustack_testbed",
    ]


# Small modules named for what they hold: none in the runtime grows past
# about 800 lines (a module that does is two things; split it).
MAX_MODULE_LINES = 820


def test_no_runtime_module_is_larger_than_about_800_lines() -> None:
    sizes = {p.relative_to(RUNTIME).as_posix(): len(p.read_text().splitlines())
             for p in RUNTIME.rglob("*.py")}
    large = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not large, large
