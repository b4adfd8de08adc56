"""tcpdump in a namespace, and the pcap files it writes."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Protocol

from ustack.link import pcap
from ustack_testbed.commands import terminate
from ustack_testbed.errors import TestbedError


def read_pcap(data: bytes) -> list[bytes]:
    """The frames of a classic pcap file (the format tcpdump -w writes),
    read by ustack's own reader (``ustack.link.pcap.read_pcap``)."""
    try:
        _linktype, records = pcap.read_pcap(data)
    except pcap.PcapFormatError:
        raise TestbedError("not a pcap file") from None
    return [frame for _t, frame in records]


class Spawner(Protocol):
    """Where a :class:`Capture` runs tcpdump: a :class:`Netns`, as far as it cares."""

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` there; the owner stops it at close (:meth:`Netns.popen`)."""


class Capture:
    """tcpdump in a namespace writing a pcap; see :meth:`Netns.capture`."""

    def __init__(self, ns: Spawner, iface: str, bpf: str, timeout: float) -> None:
        self.frames: list[bytes] = []
        self._file = tempfile.NamedTemporaryFile(prefix="ustack-cap-", suffix=".pcap")  # noqa: SIM115
        # -Z root: tcpdump would otherwise drop to user tcpdump and fail to
        # write a root-owned temp file; -U: write each packet at once.
        cmd = [
            "tcpdump",
            "--immediate-mode",
            "-Z",
            "root",
            "-U",
            "-n",
            "-s",
            "0",
            "-i",
            iface,
            "-w",
            self._file.name,
        ]
        if bpf:
            cmd.append(bpf)
        if shutil.which("tcpdump") is None:
            raise TestbedError("tcpdump not found (scripts/install-system-deps.sh)")
        self._proc = ns.popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self._proc.stderr is not None
        fd = self._proc.stderr.fileno()
        seen = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"listening on" not in seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._proc.poll() is not None:
                    terminate(self._proc)
                    raise TestbedError(f"tcpdump did not start: {seen.decode(errors='replace')}")
                if sel.select(remaining):
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        continue
                    seen += chunk

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, settle: float = 0.05) -> list[bytes]:
        """Stop tcpdump (SIGINT flushes its buffer) and read the frames.

        ``settle``: a frame the kernel has already delivered may still sit in
        tcpdump's ring when the signal lands; a short pause lets it be read.
        """
        if self._file.closed:
            return self.frames
        if self._proc.poll() is None:
            time.sleep(settle)
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        if self._proc.stderr is not None:
            self._proc.stderr.close()
        with open(self._file.name, "rb") as f:
            data = f.read()
        self._file.close()
        self.frames = read_pcap(data) if data else []
        return self.frames
