"""The rules that keep the API floor one floor, checked on the source.

Each front end (``ustack.socket``, ``ustack.aio``, the native API) stands
on the same core pieces: one ephemeral port allocator.  These tests read
``src/`` with ``ast`` and fail, naming file and line, when code elsewhere
grows a second copy.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "ustack"


def modules(root: Path = SRC) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(root.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(SRC)}:{getattr(node, 'lineno', 0)}"


def test_only_net_ports_walks_the_ephemeral_range() -> None:
    """One allocator (``net/ports.py``): nothing else names the range's bounds."""
    bounds = {"EPHEMERAL_LOW", "EPHEMERAL_HIGH", 32768, 60999}
    offenders = []
    for path, tree in modules():
        if path == PACKAGE / "net" / "ports.py":
            continue
        for node in ast.walk(tree):
            name = node.id if isinstance(node, ast.Name) else \
                node.attr if isinstance(node, ast.Attribute) else \
                node.value if isinstance(node, ast.Constant) else None
            if isinstance(name, (str, int)) and name in bounds:
                offenders.append(where(path, node))
    assert offenders == [], "the ephemeral range is net/ports.py's alone"
