"""Reading src/ with ``ast``: its modules and every import between them.

One scanner for the checks on the source (``test_import_graph``,
``test_layout``, ``test_api_floor``).  Every import counts, wherever it is
written: at the top, inside a function, under ``if TYPE_CHECKING:``.
``from pkg import name`` is an import of the module ``pkg.name`` when there
is such a module, else of ``pkg`` (with ``name``); relative imports are
resolved.  ``module._name`` reached through an imported module counts as an
import of that name (for privacy, not as an edge of the graph).  Only
imports of modules under the scanned packages are recorded.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
RUNTIME = "ustack"
TOOLS = ("ustack_testbed", "ustack_conform")  # beside the runtime, never imported by it
PACKAGES = (RUNTIME, *TOOLS)


@dataclass(frozen=True)
class Import:
    """One imported module (``name``: the attribute taken from it, if any).

    ``attribute``: not an import statement but ``module._name`` reached through
    an imported module; it counts for privacy, not as an edge of the graph.
    """

    importer: str
    module: str
    name: str | None
    line: int
    attribute: bool = False


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def find_modules(src: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the packages."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((src / package).rglob("*.py")):
            parts = list(path.relative_to(src).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import in ``path`` of a module in ``modules``, and every
    ``module._name`` reached through one (as an import of that name)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    bound: dict[str, str] = {}  # a local name -> the module it stands for
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.append(Import(name, alias.name, None, node.lineno))
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    head = alias.name.partition(".")[0]
                    bound[head] = head
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from ..m import y
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    found.append(Import(name, sub, None, node.lineno))
                    bound[alias.asname or alias.name] = sub
                elif base in modules:
                    imported = None if alias.name == "*" else alias.name
                    found.append(Import(name, base, imported, node.lineno))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            target = _dotted(node.value, bound)
            if f"{target}.{node.attr}" in modules:  # a private module
                found.append(Import(name, f"{target}.{node.attr}", None, node.lineno, True))
            elif target in modules:
                found.append(Import(name, target, node.attr, node.lineno, True))
    return found


def _dotted(node: ast.expr, bound: dict[str, str]) -> str | None:
    """``a.b.c`` with ``a`` replaced by the module it is bound to, else None."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value, bound)
        return None if head is None else f"{head}.{node.attr}"
    return None


def all_imports(src: Path = SRC, packages: Iterable[str] = PACKAGES) -> list[Import]:
    modules = find_modules(src, packages)
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def in_package(module: str, package: str) -> bool:
    """``module`` is ``package`` or one of its modules."""
    return module == package or module.startswith(package + ".")


def literal_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, name)`` of every ``importlib.import_module("name")`` and
    ``__import__("name")`` with a literal name: imports no statement shows."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if (called in ("import_module", "__import__") and isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)):
                found.append((node.lineno, arg.value))
    return found


def parsed(root: Path = SRC) -> Iterator[tuple[Path, ast.Module]]:
    """Every ``.py`` under ``root``, parsed."""
    for path in sorted(root.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))
