"""A running ``ustack up``: its command line, its ``ready:`` line, its counters.

``parse_ready_line``, ``parse_counters`` and ``stack_name`` are pure helpers
(no root needed; unit tested in tests/unit/test_testbed.py).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from ustack.bringup import LinkOptions
from ustack.cli import build_parser
from ustack.cli.common import UsageError
from ustack_testbed.commands import VERBOSE, trace
from ustack_testbed.errors import TestbedError, warn
from ustack_testbed.netns import Netns


def parse_ready_line(line: str) -> dict[str, str]:
    """``ready: link=tap:u0 mac=.. ip=..`` -> {"link": "tap:u0", "mac": .., ...}."""
    line = line.strip()
    if not line.startswith("ready:"):
        raise TestbedError(f"not a ready line: {line!r}")
    fields: dict[str, str] = {}
    for word in line[len("ready:") :].split():
        key, sep, value = word.partition("=")
        if sep:
            fields[key] = value
    return fields


def parse_counters(text: str) -> dict[str, int]:
    """Counters printed as ``Name value`` lines; other lines are ignored."""
    counters: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0][:1].isalpha():
            try:
                counters[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return counters


class UstackProcess:
    """A running ``ustack up`` (started by :meth:`Testbed.start_ustack`)."""

    def __init__(
        self,
        ns: Netns,
        popen: subprocess.Popen[str],
        name: str,
        stderr_file: IO[str],
    ) -> None:
        self.ns = ns
        self.popen = popen
        self.name = name
        self.ready: dict[str, str] = {}
        self.ready_line = ""
        self.early_output: list[str] = []
        self.returncode: int | None = None
        self.stdout_tail = ""
        self._pending = b""
        self._stderr_file = stderr_file

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def mac(self) -> str:
        return self.ready.get("mac", "")

    @property
    def ip(self) -> str:
        """The stack's address without prefix length."""
        return self.ready.get("ip", "").partition("/")[0]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stderr_text(self) -> str:
        self._stderr_file.flush()
        self._stderr_file.seek(0)
        return self._stderr_file.read()

    def wait_ready(self, timeout: float) -> None:
        """Read stdout until the ``ready:`` line; raise with stderr on failure."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.popen.stdout.fileno()
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.kill()
                    raise TestbedError(
                        f"ustack not ready after {timeout}s; stderr:\n{self.stderr_text()}"
                    )
                if not sel.select(remaining):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.popen.wait(timeout=5)
                    self.returncode = self.popen.returncode
                    raise TestbedError(
                        f"ustack exited ({self.returncode}) before ready; output:\n"
                        f"{buf.decode(errors='replace')}{self.stderr_text()}"
                    )
                buf += chunk
                while b"\n" in buf:
                    raw, _, buf = buf.partition(b"\n")
                    line = raw.decode(errors="replace")
                    if line.startswith("ready:"):
                        self.ready_line = line
                        self.ready = parse_ready_line(line)
                        # Anything after the ready line is part of the final
                        # output, read by stop(); keep it.
                        self._pending = buf
                        return
                    self.early_output.append(line)

    def report(self, timeout: float = 10.0) -> dict[str, Any]:
        """The running stack's report: ``ustack stats --name N --json``."""
        proc = self.ns.run(
            [sys.executable, "-m", "ustack.cli", "stats", "--name", self.name, "--json"],
            timeout=timeout,
        )
        try:
            data = json.loads(proc.stdout)
        except ValueError as exc:
            raise TestbedError(f"ustack stats printed no JSON: {proc.stdout[:200]!r}") from exc
        if not isinstance(data, dict):
            raise TestbedError(f"ustack stats JSON is not an object: {proc.stdout[:200]!r}")
        return data

    def stats(self, timeout: float = 10.0) -> dict[str, int]:
        """The running stack's counters (zeros included)."""
        counters = self.report(timeout).get("counters")
        if not isinstance(counters, dict):
            raise TestbedError("ustack stats --json has no 'counters' object")
        return {str(k): int(v) for k, v in counters.items() if isinstance(v, int)}

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGINT) -> dict[str, int]:
        """Signal the stack, wait, and return the counters it printed.

        Raises TestbedError if it does not exit in time (it is then killed)
        or exits non-zero; the spec says SIGINT/SIGTERM exit 0.
        """
        if self.returncode is not None:
            raise TestbedError("ustack already stopped")
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            out, _ = self.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.kill()
            raise TestbedError(f"ustack (pid {self.pid}) ignored signal {sig}") from exc
        self.returncode = self.popen.returncode
        self.stdout_tail = self._pending.decode(errors="replace") + out
        if self.returncode != 0:
            raise TestbedError(f"ustack exited {self.returncode}; stderr:\n{self.stderr_text()}")
        return parse_counters(self.stdout_tail)

    def kill(self) -> None:
        """Stop without questions (cleanup path): SIGINT, then SIGKILL."""
        if self.popen.poll() is None:
            t0 = time.monotonic()
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                warn(f"ustack {self.name} (pid {self.pid}) ignored SIGINT for 5 s; killed")
                self.popen.kill()
                self.popen.wait(timeout=5)
            if VERBOSE:
                trace(f"{time.monotonic() - t0:.3f}s stop ustack {self.name} pid {self.pid}")
        if self.returncode is None:
            self.returncode = self.popen.returncode
        for stream in (self.popen.stdout,):
            if stream is not None:
                stream.close()


def stack_name(args: Sequence[str]) -> str:
    """The control-socket name ``ustack ARGS`` (``up ...`` or ``serve ...``)
    gives its stack.

    Read with the command's own parser (``ustack.cli.build_parser``) and the
    rule of ``ustack up`` and ``serve``: ``--name``, else the link's device
    name (``LinkOptions.device_name``).  A command line the CLI rejects
    raises TestbedError with the CLI's one-line message.
    """
    try:
        parsed = build_parser().parse_args(list(args))
    except UsageError as e:
        raise TestbedError(str(e)) from None
    if parsed.command not in ("up", "serve"):
        raise TestbedError(f"not a ustack up or serve command line: {' '.join(args)}")
    if parsed.name:
        return str(parsed.name)
    try:
        return LinkOptions(parsed.link, parsed.ip).device_name
    except ValueError as e:
        raise TestbedError(f"ustack up: {e}") from None
