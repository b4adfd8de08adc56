"""``make demo`` runs whole: every step passes and the plot it names exists.

The demo (scripts/demo.py) is the tour a newcomer takes first; a change
that breaks any step of it (ping, UDP echo, serve and curl, load, a flood
absorbed by SYN cookies, ``ustack ss -i``, ``ustack plot``) fails here
rather than in front of them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def test_the_demo_passes_every_step_and_leaves_its_plot(root_ok: None) -> None:
    got = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True,
                         timeout=240, check=False)
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-3000:]
    assert "demo: all steps passed" in got.stdout
    for step in range(1, 7):
        assert f"\n== {step}. " in got.stdout
    # ss -i showed the live transfer with TCP internals.
    assert re.search(r"ESTAB.*\n.*cwnd:\d+", got.stdout), got.stdout
    kept = re.search(r"the plot and the trace are in (\S+)", got.stdout)
    assert kept is not None, got.stdout
    folder = Path(kept.group(1))
    try:
        png = folder / "transfer.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (folder / "serve-trace.jsonl").stat().st_size > 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
