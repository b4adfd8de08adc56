"""A network namespace of a test bed: commands, sockets and captures inside it."""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ustack_testbed.capture import Capture
from ustack_testbed.commands import die_with_parent, get_libc
from ustack_testbed.commands import run as run_command
from ustack_testbed.errors import warn
from ustack_testbed.names import check_test_address

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000
_ethtool_warned = False


class NetnsOwner(Protocol):
    """What a :class:`Netns` needs of the :class:`Testbed` that made it."""

    def adopt(self, proc: subprocess.Popen[Any]) -> None:
        """Stop ``proc`` (by pid) when the test bed closes."""


@dataclass(eq=False)
class Netns:
    """A network namespace made by a :class:`Testbed` (``/run/netns/NAME``)."""

    name: str
    testbed: NetnsOwner = field(repr=False)

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def exec_prefix(self) -> list[str]:
        """Prepend to a command to run it inside this namespace."""
        return ["ip", "netns", "exec", self.name]

    def run(
        self,
        cmd: Sequence[str],
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the namespace, capture text output, bounded in time.

        ``env``: the command's whole environment (default: this process's);
        ``ip netns exec`` passes it on unchanged.
        """
        return run_command(
            [*self.exec_prefix(), *cmd], check=check, timeout=timeout, input=input, env=env
        )

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` in the namespace; the testbed stops it (by pid) at close.

        ``ip netns exec`` execs the command, so ``.pid`` is the command's own,
        and it passes the environment on unchanged (an ``env=`` keyword
        reaches the command).
        """
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("preexec_fn", die_with_parent)
        proc: subprocess.Popen[Any] = subprocess.Popen([*self.exec_prefix(), *cmd], **kw)
        self.testbed.adopt(proc)
        return proc

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ip -n NAME args...``."""
        return run_command(["ip", "-n", self.name, *args], check=check)

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def add_address(self, iface: str, cidr: str) -> None:
        check_test_address(cidr)
        self.ip("addr", "add", cidr, "dev", iface)

    def link_up(self, iface: str) -> None:
        self.ip("link", "set", iface, "up")

    def disable_offloads(self, iface: str) -> bool:
        """Turn off checksum and segmentation offloads on ``iface``.

        A veth peer with tx checksum offload hands frames to AF_PACKET with
        the checksum only partially computed, and with GSO/GRO it moves 64 KB
        super-frames: a stack without PACKET_VNET_HDR would see both as
        garbage.  Returns False (with a warning) when ethtool is missing.
        """
        global _ethtool_warned
        if shutil.which("ethtool") is None:
            if not _ethtool_warned:
                _ethtool_warned = True
                warn(
                    "ethtool not found: veth offloads stay ON, so frames may carry "
                    "partial checksums or be GSO super-frames (install ethtool)"
                )
            return False
        self.run(["ethtool", "-K", iface, "tx", "off", "tso", "off", "gso", "off", "gro", "off"])
        return True

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a helper thread that has joined this namespace.

        setns(2) with CLONE_NEWNET changes only the calling thread, and a
        socket keeps the namespace it was created in, so this is how an
        in-process test gets a kernel socket inside the namespace without a
        subprocess per datagram.
        """
        box: list[Any] = []

        def worker() -> None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if get_libc().setns(fd, _CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns({self.path}): {os.strerror(err)}")
                finally:
                    os.close(fd)
                box.append((True, fn()))
            except BaseException as exc:
                box.append((False, exc))

        thread = threading.Thread(target=worker, name=f"netns-{self.name}")
        thread.start()
        thread.join()
        ok, value = box[0]
        if not ok:
            raise value
        result: T = value
        return result

    def capture(self, iface: str, bpf: str = "", timeout: float = 10.0) -> Capture:
        """Start tcpdump on ``iface`` (returns once it is listening).

        Use as ``with ns.capture(dev, "icmp") as cap: ...``; after the block
        ``cap.frames`` holds the captured Ethernet frames.
        """
        return Capture(self, iface, bpf, timeout)

    def socket(
        self,
        family: int = socket.AF_INET,
        type: int = socket.SOCK_DGRAM,
        proto: int = 0,
    ) -> socket.socket:
        """A kernel socket living in this namespace."""
        return self.call(lambda: socket.socket(family, type, proto))
