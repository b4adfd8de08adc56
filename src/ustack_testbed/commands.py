"""Running the tools (``ip``, ``ethtool``, ``sysctl``, ``tcpdump``) and their processes."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ustack_testbed.errors import TestbedError

_PR_SET_PDEATHSIG = 1


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30.0,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with text output captured and a time limit; TestbedError if it fails.

    ``env``: the command's whole environment (default: this process's).
    """
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            env=None if env is None else dict(env),
        )
    except FileNotFoundError as exc:
        raise TestbedError(f"command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"timed out after {timeout}s: {' '.join(cmd)}") from exc
    if VERBOSE:
        trace(f"{time.monotonic() - t0:.3f}s rc={proc.returncode} {' '.join(cmd)}")
    if check and proc.returncode != 0:
        raise TestbedError(
            f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


#: USTACK_TESTBED_VERBOSE=1 traces every command, its duration and each
#: stack stop to stderr (for a CI run that hangs or is slow in setup).
VERBOSE = os.environ.get("USTACK_TESTBED_VERBOSE", "") not in ("", "0")


def trace(message: str) -> None:
    """``testbed: MESSAGE`` to stderr (the USTACK_TESTBED_VERBOSE trace)."""
    print(f"testbed: {message}", file=sys.stderr, flush=True)


_libc: Any = None


def get_libc() -> Any:
    """The C library (ctypes, errno kept) for the calls Python lacks: setns, prctl."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def die_with_parent() -> None:
    """Child-side (a Popen preexec_fn): get SIGTERM when the parent dies, so a killed test run
    does not leave stacks running that keep a namespace alive."""
    get_libc().prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def terminate(proc: subprocess.Popen[Any]) -> None:
    """Stop ``proc`` if it still runs: SIGTERM, then SIGKILL after 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
