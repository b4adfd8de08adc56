"""The two builds: the mypyc-compiled core and the pure-Python sources.

``make test`` runs the suite with ``USTACK_EXPECT_BUILD`` naming the build it
means to test, so a compile that silently fell back to pure Python (or a
``USTACK_PURE`` that did not take) fails here instead of passing unnoticed.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from srcscan import SRC

from ustack import purepy

ROOT = SRC.parent


def compiled_modules() -> list[str]:
    """The modules setup.py compiles (its COMPILED list, read, not run)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "COMPILED"):
            paths = [Path(ROOT, p) for p in ast.literal_eval(node.value)]
            break
    else:
        raise AssertionError("setup.py has no COMPILED list")
    files = [f for p in paths for f in (sorted(p.rglob("*.py")) if p.is_dir() else [p])]
    return [".".join(f.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
            for f in files]


def test_the_build_under_test_is_the_one_expected() -> None:
    expected = os.environ.get("USTACK_EXPECT_BUILD")
    if not expected:
        pytest.skip("USTACK_EXPECT_BUILD not set (make test sets it)")
    assert purepy.build() == expected, purepy.describe()


def test_every_listed_module_runs_in_the_same_build() -> None:
    """All compiled or none: a half-compiled core would mean a stale or
    failed build (and a compiled module calling a pure one pays the price)."""
    kinds = {}
    for name in compiled_modules():
        module = __import__(name, fromlist=["_"])
        kinds[name] = "pure" if (module.__file__ or "").endswith(".py") else "compiled"
    assert set(kinds.values()) == {purepy.build()}, kinds


def test_no_compiled_module_is_older_than_its_source() -> None:
    """make install recompiles when a source changes.  The code of every
    compiled module is in mypyc's one shared library (src/*__mypyc*.so; the
    per-module extensions are stubs that import it): a source newer than it
    is a stale build whose tests would test old code."""
    shared = sorted(SRC.glob("*__mypyc*.so"))
    if not shared:
        pytest.skip("no compiled build here")
    built = max(p.stat().st_mtime for p in shared)
    stale = [name for name in compiled_modules()
             if _source(name).stat().st_mtime > built]
    assert not stale, f"stale compiled modules (run make compile): {stale}"


def _source(module: str) -> Path:
    base = SRC.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _run(code: str, **env: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env}, check=True)
    return proc.stdout.strip()


def test_ustack_pure_selects_the_sources() -> None:
    out = _run("import ustack.stack, ustack.tcp.connection, ustack.wire.tcp as w\n"
               "from ustack import purepy\n"
               "print(purepy.build(), ustack.stack.__file__, w.__file__)",
               USTACK_PURE="1")
    build, *files = out.split()
    assert build == "pure" and all(f.endswith(".py") for f in files), out


def test_version_names_the_build() -> None:
    cli = [sys.executable, "-m", "ustack", "--version"]
    pure = subprocess.run(cli, capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, "USTACK_PURE": "1"}).stdout
    assert pure.startswith("ustack ") and "(pure Python, USTACK_PURE=1)" in pure
    default = subprocess.run(cli, capture_output=True, text=True, timeout=60, check=True,
                             env={k: v for k, v in os.environ.items() if k != "USTACK_PURE"})
    installed = any((SRC / "ustack").glob("stack.*.so"))  # what runs without USTACK_PURE
    word = "(compiled with mypyc)" if installed else "(pure Python, not compiled"
    assert word in default.stdout, default.stdout


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="no C compiler")
def test_without_a_compiler_the_build_leaves_pure_python(tmp_path: Path) -> None:
    """A compiler that fails (CC=false) ends in a pure install, said in one
    line, with no extension left behind that could not be imported."""
    pytest.importorskip("mypyc")
    shutil.copytree(SRC / "ustack", tmp_path / "src" / "ustack",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CC": "false", "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = [line for line in proc.stderr.splitlines() if line.startswith("ustack: ")]
    assert len(said) == 1 and "installed as pure Python" in said[0], proc.stderr[-2000:]
    assert not list((tmp_path / "src").rglob("*.so"))
    out = _run("import ustack.stack; print(ustack.stack.__file__)",
               PYTHONPATH=str(tmp_path / "src"))
    assert out == str(tmp_path / "src" / "ustack" / "stack.py")


def test_stale_modules_are_sources_edited_after_their_compile(tmp_path: Path) -> None:
    """The import-time warning's test: a source newer than its extension by
    more than the slack (edited since the compile) is named; one written
    moments apart (an install) is not."""
    pkg = tmp_path / "ustack"
    (pkg / "net").mkdir(parents=True)
    suffix = ".cpython-311-x86_64-linux-gnu.so"
    for rel, age_of_so in (("a", 120.0), ("net/b", 5.0), ("net/c", 0.0)):
        src, ext = pkg / f"{rel}.py", pkg / f"{rel}{suffix}"
        src.write_text("")
        ext.write_bytes(b"")
        now = src.stat().st_mtime
        os.utime(ext, (now - age_of_so, now - age_of_so))
    assert purepy.stale_modules(str(pkg)) == ["ustack/a.py"]
    assert purepy.stale_modules(str(pkg), slack=1.0) == ["ustack/a.py", "ustack/net/b.py"]


def test_ustack_pure_refuses_an_extension_without_its_source(tmp_path: Path) -> None:
    """USTACK_PURE=1 never falls back to an extension left without a source
    (a module renamed or deleted since the compile)."""
    shutil.copytree(SRC / "ustack", tmp_path / "ustack",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    (tmp_path / "ustack" / "orphan.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    proc = subprocess.run([sys.executable, "-c", "import ustack.orphan"], capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "USTACK_PURE": "1", "PYTHONPATH": str(tmp_path)})
    assert proc.returncode != 0
    assert "ModuleNotFoundError" in proc.stderr and "imports sources only" in proc.stderr
