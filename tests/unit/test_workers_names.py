"""``--name`` with ``--workers N``: worker K serves ``NAME@K``, so a NAME
with an ``@`` of its own is refused in one line before any worker starts
(it used to pass the parent's check and fail in every worker)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def ustack(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
    return subprocess.run([sys.executable, "-m", "ustack.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


@pytest.mark.parametrize("command", [
    ["up", "--link", "packet:nosuch0", "--ip", "198.18.9.2/24"],
    ["serve", ".", "--link", "tap:nosuch0", "--ip", "198.18.9.2/24"],
    ["load", "http://198.18.9.1/", "--link", "packet:nosuch0", "--ip", "198.18.9.2/24",
     "--sources", "2", "-d", "1"],
], ids=["up", "serve", "load"])
def test_a_name_with_an_at_sign_is_refused_before_the_workers_start(
        command: list[str]) -> None:
    out = ustack(*command, "--name", "foo@1", "--workers", "2")
    assert out.returncode == 2, out
    assert out.stdout == ""
    prog = f"ustack {command[0]}"
    assert out.stderr == (f"{prog}: --name foo@1: no '@' in the name of a stack with "
                          "--workers 2 (worker K serves NAME@K)\n")
