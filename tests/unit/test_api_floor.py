"""The rules that keep the API floor one floor, checked on the source.

Each front end (``ustack.socket``, ``ustack.aio``, the native API) stands
on the same core pieces: one clock that only the Stack writes, one
ephemeral port allocator.  These tests read ``src/`` with ``ast`` and fail,
naming file and line, when code elsewhere grows a second copy.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from srcscan import SRC, parsed

PACKAGE = SRC / "ustack"


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(SRC)}:{getattr(node, 'lineno', 0)}"


def assigned_attributes(tree: ast.Module) -> Iterator[ast.Attribute | ast.Call]:
    """Every ``x.attr = ...`` / ``x.attr += ...`` target, and every ``setattr`` call."""
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "setattr":
            yield node
        for t in targets:
            for sub in ast.walk(t):  # tuple targets: a.now, b = ...
                if isinstance(sub, ast.Attribute):
                    yield sub


def test_scanner_sees_a_clock_write() -> None:
    """The scan below is only as good as its matcher: it must see these."""
    tree = ast.parse("stack.now = 1\nself.stack.now += 2\na, b.now = 1, 2\n"
                     "setattr(stack, 'now', 3)\nself.now = 4\n")
    found = [n for n in assigned_attributes(tree) if clock_write(n)]
    assert [n.lineno for n in found] == [1, 2, 3, 4]


def clock_write(node: ast.Attribute | ast.Call) -> bool:
    """``<something other than self>.now = ...`` or ``setattr(x, "now", ...)``.

    ``self.now`` is a class's own clock (the conformance runner, test
    harnesses keep one); a Stack's clock is written through a reference to
    the Stack (``stack.now``, ``self.stack.now``, ``aio.stack.now``).
    """
    if isinstance(node, ast.Call):
        return len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
            and node.args[1].value == "now"
    return node.attr == "now" and not (isinstance(node.value, ast.Name)
                                       and node.value.id == "self")


def test_only_the_stack_writes_its_clock() -> None:
    """Time enters the core only through ``Stack.poll(now)``, ``flush(now)``
    or ``advance(now)``: no code outside ``stack.py`` assigns ``.now`` on a
    Stack (a driver that did would bypass what those methods do with it)."""
    offenders = [where(path, node) for path, tree in parsed()
                 if path != PACKAGE / "stack.py"
                 for node in assigned_attributes(tree) if clock_write(node)]
    assert offenders == [], "Stack.now written outside stack.py (use advance/flush/poll)"


def test_only_net_ports_walks_the_ephemeral_range() -> None:
    """One allocator (``net/ports.py``): nothing else names the range's bounds."""
    bounds = {"EPHEMERAL_LOW", "EPHEMERAL_HIGH", 32768, 60999}
    offenders = []
    for path, tree in parsed():
        if path == PACKAGE / "net" / "ports.py":
            continue
        for node in ast.walk(tree):
            name = node.id if isinstance(node, ast.Name) else \
                node.attr if isinstance(node, ast.Attribute) else \
                node.value if isinstance(node, ast.Constant) else None
            if isinstance(name, (str, int)) and name in bounds:
                offenders.append(where(path, node))
    assert offenders == [], "the ephemeral range is net/ports.py's alone"
