"""A reader that leaves (``ustack stats --watch | head``) ends the command
quietly, as SIGPIPE ends a C tool: no "Broken pipe" line, no traceback at
exit, status 141 (128 + SIGPIPE)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_output_to_a_reader_that_left_ends_quietly() -> None:
    r, w = os.pipe()
    os.close(r)  # the reader has left before a byte is written
    try:
        got = subprocess.run([sys.executable, "-m", "ustack.cli", "--version"],
                             stdout=w, stderr=subprocess.PIPE, text=True, timeout=60,
                             check=False)
    finally:
        os.close(w)
    assert got.returncode == 141, got.stderr
    assert got.stderr == ""
