"""Compile the C tools in bench/ on demand (``cc -O2`` into bench/bin/).

The load tools are C so that they measure the stack at the other end, not
themselves; they are built when first needed and rebuilt when their source,
or a header next to it (common.h), is newer than the binary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


def compile_c(
    source: Path,
    binary: Path,
    libs: Sequence[str] = (),
    *,
    error: type[Exception] = RuntimeError,
) -> Path:
    """``binary`` built from ``source`` if missing or stale; ``error`` says why not.

    Stale: older than ``source`` or than any ``*.h`` in its folder (the tools
    include their shared header with ``#include "common.h"``).
    """
    if binary.exists():
        inputs = [source, *source.parent.glob("*.h")]
        if binary.stat().st_mtime >= max(p.stat().st_mtime for p in inputs):
            return binary
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None or shutil.which(cc) is None:
        raise error(
            f"no C compiler found (need `cc` or $CC to build bench/{source.name}; "
            "on Debian/Ubuntu: apt-get install gcc)"
        )
    binary.parent.mkdir(exist_ok=True)
    # A per-process temporary name: two test processes building at once must
    # not write the same file; the rename is atomic.
    tmp = binary.with_suffix(f".tmp{os.getpid()}")
    proc = subprocess.run(
        [cc, "-O2", "-Wall", "-o", str(tmp), str(source), *libs],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise error(f"building {source.name} failed:\n{proc.stderr.strip()}")
    tmp.replace(binary)
    return binary
