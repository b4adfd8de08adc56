"""The modules under src/ import each other without cycles and without private names.

Every import counts, wherever it is written: at the top, inside a function,
under ``if TYPE_CHECKING:``.  A cycle that only type checkers follow is still
two modules that cannot be understood (or moved) one without the other.

``from pkg import name`` is an import of the module ``pkg.name`` when there is
such a module, else of ``pkg``.  A name with a leading underscore belongs to
its module: no other module under src/ may import it (nor reach it as
``module._name`` through an imported module), whether of the same top-level
package or not (``ustack_conform`` and ``ustack_testbed`` use the public names
of ``ustack`` only); a module with a leading underscore belongs to its
package.  Dunder names are not private.
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pytest
from srcscan import PACKAGES, SRC, Import, all_imports, find_modules, is_private


def graph(imports: Iterable[Import]) -> dict[str, dict[str, int]]:
    """importer -> {imported module: first line}; self-imports left out."""
    edges: dict[str, dict[str, int]] = {}
    for imp in imports:
        if imp.module != imp.importer and not imp.attribute:
            lines = edges.setdefault(imp.importer, {})
            lines[imp.module] = min(lines.get(imp.module, imp.line), imp.line)
    return edges


def strongly_connected(edges: dict[str, dict[str, int]]) -> list[frozenset[str]]:
    """The components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    nodes = sorted(set(edges) | {m for targets in edges.values() for m in targets})
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(edges.get(succ, {})))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(frozenset(component))
    return found


def a_cycle(component: frozenset[str], edges: dict[str, dict[str, int]]) -> str:
    """One shortest cycle through the component's first module, with lines."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for succ in sorted(edges.get(node, {})):
            if succ == start:
                steps = itertools.pairwise([*paths[node], start])
                return "".join(f"{a} (line {edges[a][b]}) -> " for a, b in steps) + start
            if succ in component and succ not in paths:
                paths[succ] = [*paths[node], succ]
                queue.append(succ)
    raise AssertionError(f"no cycle in {sorted(component)}")


def cycles(src: Path = SRC, packages: Iterable[str] = PACKAGES) -> dict[frozenset[str], str]:
    """Each import cycle (its component) and one path around it, printable."""
    edges = graph(all_imports(src, packages))
    return {c: a_cycle(c, edges) for c in strongly_connected(edges)}


def private_imports(
    src: Path = SRC, packages: Iterable[str] = PACKAGES
) -> dict[tuple[str, str, str], int]:
    """(importer, module, private name) -> line, across all of ``packages``:
    a tool package's imports from the runtime count like the runtime's own."""
    found: dict[tuple[str, str, str], int] = {}
    for imp in all_imports(src, packages):
        if imp.name is not None and imp.module != imp.importer and is_private(imp.name):
            found.setdefault((imp.importer, imp.module, imp.name), imp.line)
        # A private module is its package's: only modules inside may import it.
        parts = imp.module.split(".")
        for i, part in enumerate(parts):
            owner = ".".join(parts[:i])
            if (
                is_private(part)
                and imp.importer != owner
                and not imp.importer.startswith(owner + ".")
            ):
                found.setdefault((imp.importer, owner, part), imp.line)
    return found


# ------------------------------------------------------------------ the checks


def test_no_import_cycles() -> None:
    found = sorted(f"{', '.join(sorted(c))}\n    e.g. {path}" for c, path in cycles().items())
    assert not found, "import cycles in src/ (modules, one cycle):\n  " + "\n  ".join(found)


def test_no_private_name_imported_from_another_module() -> None:
    found = sorted(
        f"{importer} (line {line}) imports {name} from {module}"
        for (importer, module, name), line in private_imports().items()
    )
    assert not found, "private names imported across modules:\n  " + "\n  ".join(found)


def test_the_modules_are_found() -> None:
    modules = find_modules(SRC)
    for package in PACKAGES:
        assert package in modules
    assert "ustack_testbed.netns" in modules
    assert len(modules) > 60


# ---------------------------------------------------- the checks can fail


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, source in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return tmp_path


def test_a_cycle_through_type_checking_and_a_function_is_found(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "pa/__init__.py": "",
            "pa/low.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from pa.high import High
            """,
            "pa/mid.py": """
                def f():
                    from pa import low
            """,
            "pa/high.py": "import pa.mid\n",
            "pa/leaf.py": "from pa import high\n",
        },
    )
    found = cycles(src, ["pa"])
    assert list(found) == [frozenset({"pa.low", "pa.mid", "pa.high"})]
    assert found[frozenset({"pa.low", "pa.mid", "pa.high"})] == (
        "pa.high (line 1) -> pa.mid (line 3) -> pa.low (line 4) -> pa.high"
    )


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        pytest.param(
            {"pa/a.py": "from pb.b import thing\n", "pb/b.py": "from pa import a\n"},
            {"pa.a", "pb.b"},
            id="across-top-level-packages",
        ),
        pytest.param(
            {"pa/b.py": "from .sub import x\n", "pa/sub/x.py": "from .. import b\n"},
            {"pa.b", "pa.sub.x"},
            id="relative",
        ),
    ],
)
def test_a_cycle_is_found(tmp_path: Path, files: dict[str, str], cycle: set[str]) -> None:
    inits = {f"{Path(rel).parent}/__init__.py": "" for rel in files}
    src = _tree(tmp_path, {**inits, "pa/__init__.py": "", **files})
    packages = sorted({rel.partition("/")[0] for rel in files})
    assert set(cycles(src, packages)) == {frozenset(cycle)}


def test_importing_the_package_counts_and_no_cycle_means_no_report(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "pa/__init__.py": "from pa.a import x\nfrom pa.b import y\n",
            "pa/a.py": "from pa.b import y\nimport pa\n",  # the package: its __init__
            "pa/b.py": "import os\nfrom . import c\n",
            "pa/c.py": "",
        },
    )
    # pa -> pa.a -> pa is a cycle (a module importing its package's __init__
    # that imports it); without "import pa" there is none.
    assert set(cycles(src, ["pa"])) == {frozenset({"pa", "pa.a"})}
    (src / "pa/a.py").write_text("from pa.b import y\n", encoding="utf-8")
    assert cycles(src, ["pa"]) == {}


def test_private_imports_are_found(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "pa/__init__.py": "from pa.a import _x\n",  # __init__ is another module too
            "pa/a.py": "_x = 1\n",
            "pa/b.py": """
                from pa.a import _x, public, __version__
                from . import a
                import pa.a as alias
                def f():
                    from pa.a import _y
                    return a._z, alias._w, a.__doc__
            """,
            "pa/c.py": "from pa._priv import thing\n",
            "pa/_priv.py": "thing = 1\n",
            "pa/sub/__init__.py": "",
            "pa/sub/d.py": "from pa.sub._impl import z\n",  # inside sub: fine
            "pa/sub/_impl.py": "z = 1\n",
            "pa/e.py": "from pa.sub import _impl\n",  # outside sub
            "pb/__init__.py": "",
            "pb/x.py": "from pa.a import _x\n",  # another top-level package: the same rule
            "pb/y.py": "import pa.sub._impl\n",
        },
    )
    assert private_imports(src, ["pa", "pb"]) == {
        ("pa", "pa.a", "_x"): 1,
        ("pa.b", "pa.a", "_x"): 2,
        ("pa.b", "pa.a", "_y"): 6,
        ("pa.b", "pa.a", "_z"): 7,
        ("pa.b", "pa.a", "_w"): 7,
        ("pa.e", "pa.sub", "_impl"): 1,
        ("pb.x", "pa.a", "_x"): 1,
        ("pb.y", "pa.sub", "_impl"): 1,
    }
