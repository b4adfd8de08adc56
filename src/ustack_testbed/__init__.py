"""Disposable test hosts: network namespaces, veth pairs, TAP devices, stacks.

Tests, the demo and the benchmarks need a Linux kernel to talk to that is not
the machine's own network.  A :class:`Testbed` builds one out of network
namespaces joined by veth pairs or a TAP, with addresses from 198.18.0.0/15
(RFC 2544's benchmarking range, never routed) and no default route, so no
frame can leave the machine.  Everything it creates is recorded and deleted
again: by the context manager, at interpreter exit, on SIGTERM/SIGHUP, and, for
a run that was killed outright, by :func:`reap_stale` on the next run (names
carry the creating process's pid, so a leftover whose owner is dead is known
to be garbage and a parallel run's live objects are left alone).

Example::

    with Testbed() as tb:
        topo = tap_topology(tb)
        stack = topo.start_ustack("--service", "udp-echo:7")
        topo.peer_ns.run(["ping", "-c", "1", "-W", "2", topo.stack_ip])
        counters = stack.stop()

Only the standard library is used; the work is done by ``ip``, ``ethtool``
and ``sysctl`` run as subprocesses (root is required for anything but the
pure helpers at the top of this module).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ipaddress
import itertools
import json
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Any, TypeVar

__all__ = [
    "PACKET_PEER_CIDR",
    "PACKET_STACK_CIDR",
    "TAP_PEER_CIDR",
    "TAP_STACK_CIDR",
    "TEST_NET",
    "Capture",
    "Netns",
    "Testbed",
    "TestbedError",
    "TestbedWarning",
    "Topology",
    "UstackProcess",
    "check_test_address",
    "cleanup_all",
    "owner_pid",
    "packet_topology",
    "parse_counters",
    "parse_ready_line",
    "read_pcap",
    "reap_stale",
    "stack_name",
    "start_ustack",
    "tap_topology",
    "topology",
]

T = TypeVar("T")

#: The only addresses a testbed hands out (RFC 2544 / RFC 6890 benchmarking).
TEST_NET = ipaddress.IPv4Network("198.18.0.0/15")
#: Every namespace and interface name starts with this, then the owner's pid.
NAME_PREFIX = "us"
#: Linux IFNAMSIZ is 16 including the terminating NUL.
IFNAME_MAX = 15

TAP_PEER_CIDR = "198.18.0.1/24"
TAP_STACK_CIDR = "198.18.0.2/24"
PACKET_PEER_CIDR = "198.18.1.1/24"
PACKET_STACK_CIDR = "198.18.1.2/24"

_STALE_RE = re.compile(rf"^{NAME_PREFIX}(\d+)-[0-9a-z]+")
_ROLE_RE = re.compile(r"[^a-z0-9]+")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1


class TestbedError(RuntimeError):
    """A testbed command failed, or a stack did not start or stop cleanly."""

    __test__ = False  # not a pytest test class despite the name


class TestbedWarning(UserWarning):
    """Something was tolerated (a missing tool, a failed cleanup step)."""

    __test__ = False


# --------------------------------------------------------------------------
# Pure helpers (no root needed; unit tested in tests/unit/test_testbed.py)
# --------------------------------------------------------------------------


def _base36(n: int) -> str:
    if n < 0:
        raise ValueError("negative")
    digits = []
    while True:
        n, r = divmod(n, 36)
        digits.append(_B36[r])
        if n == 0:
            return "".join(reversed(digits))


class Namer:
    """Makes names ``us<pid>-<counter base 36><suffix>``, unique per process.

    The pid makes parallel runs (and CI next to a developer) collide-free and
    lets :func:`reap_stale` tell a dead run's leftovers from a live one's; the
    counter is shared by all testbeds of a process.  Interface names must fit
    IFNAMSIZ, so the suffix is short and the length is checked, not assumed.
    """

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self._counter = itertools.count()

    def iface(self, kind: str) -> str:
        """A fresh interface name; ``kind`` is one letter or two (a, b, t, ...)."""
        if not (1 <= len(kind) <= 2 and kind.isalnum() and kind.islower()):
            raise ValueError(f"interface kind must be 1-2 lowercase chars: {kind!r}")
        name = f"{NAME_PREFIX}{self.pid}-{_base36(next(self._counter))}{kind}"
        if len(name) > IFNAME_MAX:
            raise TestbedError(f"interface name {name!r} longer than {IFNAME_MAX}")
        return name

    def netns(self, role: str) -> str:
        """A fresh namespace name; ``role`` is kept (sanitised) for humans."""
        tag = _ROLE_RE.sub("", role.lower())[:12] or "ns"
        return f"{NAME_PREFIX}{self.pid}-{_base36(next(self._counter))}-{tag}"


_namer = Namer()
_namer_lock = threading.Lock()


def _current_namer() -> Namer:
    """The namer for this process (a fork gets a new pid, hence a new namer)."""
    global _namer
    with _namer_lock:
        if _namer.pid != os.getpid():
            _namer = Namer()
        return _namer


def owner_pid(name: str) -> int | None:
    """The pid embedded in a testbed-made name, or None for foreign names."""
    m = _STALE_RE.match(name)
    return int(m.group(1)) if m else None


def check_test_address(cidr: str) -> ipaddress.IPv4Interface:
    """Parse ``A.B.C.D/N`` and insist it lies inside 198.18.0.0/15.

    This is the guard that keeps tests off every real network: a typo'd
    address fails here instead of sending traffic somewhere.
    """
    try:
        iface = ipaddress.IPv4Interface(cidr)
    except ValueError as exc:
        raise TestbedError(f"not an IPv4 address/prefix: {cidr!r}") from exc
    if "/" not in cidr:
        raise TestbedError(f"address needs a prefix length: {cidr!r}")
    if iface.network.prefixlen < TEST_NET.prefixlen or not iface.network.subnet_of(TEST_NET):
        raise TestbedError(f"{cidr} is outside the test range {TEST_NET}")
    return iface


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


# --------------------------------------------------------------------------
# Running things
# --------------------------------------------------------------------------


def _run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30.0,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise TestbedError(f"command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"timed out after {timeout}s: {' '.join(cmd)}") from exc
    if _VERBOSE:
        _trace(f"{time.monotonic() - t0:.3f}s rc={proc.returncode} {' '.join(cmd)}")
    if check and proc.returncode != 0:
        raise TestbedError(
            f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


#: USTACK_TESTBED_VERBOSE=1 traces every command, its duration and each
#: stack stop to stderr (for a CI run that hangs or is slow in setup).
_VERBOSE = os.environ.get("USTACK_TESTBED_VERBOSE", "") not in ("", "0")


def _trace(message: str) -> None:
    print(f"testbed: {message}", file=sys.stderr, flush=True)


_libc: Any = None


def _get_libc() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _die_with_parent() -> None:
    """Child-side: get SIGTERM when the parent dies, so a killed test run
    does not leave stacks running that keep a namespace alive."""
    _get_libc().prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _warn(message: str) -> None:
    warnings.warn(message, TestbedWarning, stacklevel=3)


_ethtool_warned = False


@dataclass(eq=False)
class Netns:
    """A network namespace made by a :class:`Testbed` (``/run/netns/NAME``)."""

    name: str
    testbed: Testbed = field(repr=False)

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
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the namespace, capture text output, bounded in time."""
        return _run([*self.exec_prefix(), *cmd], check=check, timeout=timeout, input=input)

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` in the namespace; the testbed stops it (by pid) at close.

        ``ip netns exec`` execs the command, so ``.pid`` is the command's own.
        """
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("preexec_fn", _die_with_parent)
        proc: subprocess.Popen[Any] = subprocess.Popen([*self.exec_prefix(), *cmd], **kw)
        self.testbed._procs.append(proc)
        return proc

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ip -n NAME args...``."""
        return _run(["ip", "-n", self.name, *args], check=check)

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
                _warn(
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
                    if _get_libc().setns(fd, _CLONE_NEWNET) != 0:
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


_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": "<",  # microsecond, little-endian
    b"\xa1\xb2\xc3\xd4": ">",
    b"\x4d\x3c\xb2\xa1": "<",  # nanosecond variants
    b"\xa1\xb2\x3c\x4d": ">",
}


def read_pcap(data: bytes) -> list[bytes]:
    """The frames of a classic pcap file (the format tcpdump -w writes)."""
    if len(data) < 24 or data[:4] not in _PCAP_MAGIC:
        raise TestbedError("not a pcap file")
    record = struct.Struct(_PCAP_MAGIC[data[:4]] + "IIII")
    frames: list[bytes] = []
    off = 24
    while off + record.size <= len(data):
        _sec, _frac, incl, _orig = record.unpack_from(data, off)
        off += record.size
        if off + incl > len(data):
            break  # truncated last record (capture killed mid-write)
        frames.append(data[off : off + incl])
        off += incl
    return frames


class Capture:
    """tcpdump in a namespace writing a pcap; see :meth:`Netns.capture`."""

    def __init__(self, ns: Netns, iface: str, bpf: str, timeout: float) -> None:
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
                    _terminate(self._proc)
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
                    self._kill()
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
            self._kill()
            raise TestbedError(f"ustack (pid {self.pid}) ignored signal {sig}") from exc
        self.returncode = self.popen.returncode
        self.stdout_tail = self._pending.decode(errors="replace") + out
        if self.returncode != 0:
            raise TestbedError(f"ustack exited {self.returncode}; stderr:\n{self.stderr_text()}")
        return parse_counters(self.stdout_tail)

    def _kill(self) -> None:
        """Stop without questions (cleanup path): SIGINT, then SIGKILL."""
        if self.popen.poll() is None:
            t0 = time.monotonic()
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _warn(f"ustack {self.name} (pid {self.pid}) ignored SIGINT for 5 s; killed")
                self.popen.kill()
                self.popen.wait(timeout=5)
            if _VERBOSE:
                _trace(f"{time.monotonic() - t0:.3f}s stop ustack {self.name} pid {self.pid}")
        if self.returncode is None:
            self.returncode = self.popen.returncode
        for stream in (self.popen.stdout,):
            if stream is not None:
                stream.close()


def _link_device(args: Sequence[str]) -> str | None:
    """The device name in ``--link kind:NAME`` (the stack's default --name)."""
    for i, arg in enumerate(args):
        value = None
        if arg == "--link" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--link="):
            value = arg[len("--link=") :]
        if value is not None:
            return value.partition(":")[2] or None
    return None


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


def stack_name(args: Sequence[str]) -> str:
    """The control-socket name ``ustack up ARGS`` uses: --name, else the
    link's device name (the CLI's default)."""
    return _flag_value(args, "--name") or _link_device(args) or "ustack"


_live: weakref.WeakSet[Testbed] = weakref.WeakSet()
_handlers_installed = False


class Testbed:
    """Creates namespaces, veth pairs and TAPs, and deletes all of them again.

    Use as a context manager.  ``close()`` is idempotent and also runs at
    interpreter exit and on SIGTERM/SIGHUP for every testbed still open.
    Cleanup order matters: processes first (a process inside a namespace
    keeps it alive after ``ip netns del``), then links, then namespaces.
    """

    __test__ = False

    def __init__(self) -> None:
        self._namer = _current_namer()
        self._procs: list[subprocess.Popen[Any]] = []
        self._stacks: list[UstackProcess] = []
        self._links: list[tuple[Netns | None, str]] = []
        self._netns: list[Netns] = []
        self.closed = False
        _live.add(self)
        _install_handlers()

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- names ------------------------------------------------------------

    def ifname(self, kind: str = "t", ns: Netns | None = None) -> str:
        """A fresh interface name, recorded so it is deleted at close even if
        someone else (``ustack up --link tap:NAME``) creates the device."""
        name = self._namer.iface(kind)
        self._links.append((ns, name))
        return name

    # -- objects ----------------------------------------------------------

    def netns(self, role: str = "ns") -> Netns:
        """A new namespace with ``lo`` up and IPv6 off (no stray RS/MLD/DAD)."""
        self._check_open()
        ns = Netns(self._namer.netns(role), self)
        _run(["ip", "netns", "add", ns.name])
        self._netns.append(ns)
        ns.ip("link", "set", "lo", "up")
        # default.* applies to interfaces created later (veth moved in, the
        # stack's TAP); all.* to the ones present.  A kernel without IPv6
        # has no such keys: tolerate, there is nothing to silence then.
        proc = ns.run(
            [
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
            check=False,
        )
        if proc.returncode != 0:
            _warn(f"could not disable IPv6 in {ns.name}: {proc.stderr.strip()}")
        return ns

    def veth(
        self,
        ns_a: Netns,
        ns_b: Netns,
        ip_a: str | None = None,
        ip_b: str | None = None,
        *,
        offloads_off: bool = True,
        mtu: int | None = None,
    ) -> tuple[str, str]:
        """A veth pair with one end in each namespace, both up.

        Returns the two interface names.  Addresses (optional) must be in
        198.18.0.0/15; no route beyond the connected subnet is added.
        """
        self._check_open()
        for cidr in (ip_a, ip_b):
            if cidr is not None:
                check_test_address(cidr)
        name_a = self.ifname("a", ns_a)
        name_b = self.ifname("b", ns_b)
        cmd = ["ip", "link", "add", name_a, "netns", ns_a.name]
        if mtu is not None:
            cmd += ["mtu", str(mtu)]
        cmd += ["type", "veth", "peer", "name", name_b, "netns", ns_b.name]
        if mtu is not None:
            cmd += ["mtu", str(mtu)]
        _run(cmd)
        for ns, name, cidr in ((ns_a, name_a, ip_a), (ns_b, name_b, ip_b)):
            if offloads_off:
                ns.disable_offloads(name)
            if cidr is not None:
                ns.add_address(name, cidr)
            ns.link_up(name)
        # Carrier comes up asynchronously (linkwatch); a test that sends at
        # once could race it.  Usually already up at the first look.
        _wait_state_up(ns_b, name_b)
        return name_a, name_b

    def tap(self, ns: Netns, ip: str | None = None) -> str:
        """A persistent TAP device in ``ns`` (for code that attaches to an
        existing TAP; ``ustack up --link tap:NAME`` makes its own)."""
        self._check_open()
        if ip is not None:
            check_test_address(ip)
        name = self.ifname("t", ns)
        ns.ip("tuntap", "add", "dev", name, "mode", "tap")
        if ip is not None:
            ns.add_address(name, ip)
        ns.link_up(name)
        return name

    def start_ustack(self, ns: Netns, args: Sequence[str], timeout: float = 10.0) -> UstackProcess:
        """Run ``python -m ustack.cli <args>`` in ``ns`` and wait for ``ready:``.

        ``args`` start with the subcommand (``["up", "--link", ...]``).  The
        stack is stopped at close if the caller has not stopped it.
        """
        self._check_open()
        name = stack_name(args)
        # A file, not a pipe: a chatty stack must never block on a full
        # stderr pipe nobody reads.  Closed in close().
        errfile = tempfile.TemporaryFile(mode="w+", prefix="ustack-stderr-")  # noqa: SIM115
        popen = ns.popen(
            [sys.executable, "-m", "ustack.cli", *args],
            stdout=subprocess.PIPE,
            stderr=errfile,
            text=True,
        )
        stack = UstackProcess(ns, popen, name, errfile)
        self._stacks.append(stack)
        stack.wait_ready(timeout)
        return stack

    # -- cleanup ----------------------------------------------------------

    def close(self) -> list[str]:
        """Delete everything; returns (and warns about) steps that failed."""
        if self.closed:
            return []
        self.closed = True
        errors: list[str] = []
        for stack in self._stacks:
            try:
                stack._kill()
            except Exception as exc:
                errors.append(f"stop ustack {stack.pid}: {exc}")
        for child in self._procs:
            try:
                _terminate(child)
            except Exception as exc:
                errors.append(f"stop pid {child.pid}: {exc}")
        for ns, link in reversed(self._links):
            cmd = ["ip", "link", "del", link]
            if ns is not None:
                cmd[1:1] = ["-n", ns.name]
            proc = _run(cmd, check=False)
            # Deleting one veth end deletes the other; a TAP the stack made
            # vanishes with it; both show up here as "Cannot find device".
            if proc.returncode != 0 and "Cannot find device" not in proc.stderr:
                errors.append(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        for ns in reversed(self._netns):
            proc = _run(["ip", "netns", "del", ns.name], check=False)
            if proc.returncode != 0 and os.path.exists(ns.path):
                errors.append(f"ip netns del {ns.name}: {proc.stderr.strip()}")
        for stack in self._stacks:
            stack._stderr_file.close()
        _live.discard(self)
        if errors:
            _warn("testbed cleanup incomplete:\n  " + "\n  ".join(errors))
        return errors

    def _check_open(self) -> None:
        if self.closed:
            raise TestbedError("testbed is closed")


def _wait_state_up(ns: Netns, iface: str, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while "state UP" not in ns.ip("-o", "link", "show", iface).stdout:
        if time.monotonic() > deadline:
            raise TestbedError(f"{iface} in {ns.name} not UP after {timeout}s")
        time.sleep(0.01)


def _terminate(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def cleanup_all() -> None:
    """Close every testbed of this process (atexit and signal path)."""
    for tb in list(_live):
        with contextlib.suppress(Exception):
            tb.close()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    cleanup_all()
    # Die of the same signal, so the parent sees the real cause.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    """atexit always; SIGTERM/SIGHUP only where nobody else handles them and
    only from the main thread (signal.signal's rule)."""
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(cleanup_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _on_signal)


def reap_stale() -> list[str]:
    """Delete testbed namespaces and root-namespace links whose creating
    process is gone (a run killed with SIGKILL).  Returns what was deleted."""
    deleted: list[str] = []
    listing = _run(["ip", "netns", "list"], check=False).stdout
    for line in listing.splitlines():
        name = line.split(" ", 1)[0]
        if _stale(name):
            _run(["ip", "netns", "del", name], check=False)
            deleted.append(name)
    links = _run(["ip", "-o", "link", "show"], check=False).stdout
    for line in links.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 3:
            continue
        name = parts[1].strip().split("@", 1)[0]
        if _stale(name):
            _run(["ip", "link", "del", name], check=False)
            deleted.append(name)
    return deleted


def _stale(name: str) -> bool:
    pid = owner_pid(name)
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# --------------------------------------------------------------------------
# Ready-made topologies
# --------------------------------------------------------------------------


@dataclass(eq=False)
class Topology:
    """Where a stack runs and where its kernel peer sits.

    ``tap``: one namespace holds both; the stack creates TAP ``stack_if`` and
    gives the kernel side ``peer_cidr``; ``peer_if`` is that same TAP seen
    from the kernel.  ``packet``: ``peer_ns`` has veth end ``peer_if`` with
    ``peer_cidr``; ``stack_ns`` has the other end ``stack_if`` up without an
    IP, for AF_PACKET.  Kernel-side tools run in ``peer_ns`` either way.
    """

    kind: str
    testbed: Testbed = field(repr=False)
    stack_ns: Netns
    peer_ns: Netns
    stack_if: str
    peer_if: str
    stack_cidr: str
    peer_cidr: str

    @property
    def stack_ip(self) -> str:
        return self.stack_cidr.partition("/")[0]

    @property
    def peer_ip(self) -> str:
        return self.peer_cidr.partition("/")[0]

    @property
    def link(self) -> str:
        return f"{self.kind}:{self.stack_if}"

    def ustack_args(self, *extra: str) -> list[str]:
        """``up --link ... --ip ...`` (plus ``--host-ip`` for tap) and ``extra``."""
        args = ["up", "--link", self.link, "--ip", self.stack_cidr]
        if self.kind == "tap":
            args += ["--host-ip", self.peer_cidr]
        return [*args, *extra]

    def start_ustack(self, *extra: str, timeout: float = 10.0) -> UstackProcess:
        return self.testbed.start_ustack(self.stack_ns, self.ustack_args(*extra), timeout)


def tap_topology(
    tb: Testbed, stack_cidr: str = TAP_STACK_CIDR, peer_cidr: str = TAP_PEER_CIDR
) -> Topology:
    """A namespace for ``ustack up --link tap:NAME --host-ip PEER --ip STACK``."""
    check_test_address(stack_cidr)
    check_test_address(peer_cidr)
    ns = tb.netns("tap")
    # Connection-per-request clients in this namespace would otherwise run
    # out of ports: tcp_tw_reuse=2 (the default) only applies to loopback.
    ns.sysctl("net.ipv4.tcp_tw_reuse", "1")
    tap = tb.ifname("t", ns)
    return Topology("tap", tb, ns, ns, tap, tap, stack_cidr, peer_cidr)


def packet_topology(
    tb: Testbed, stack_cidr: str = PACKET_STACK_CIDR, peer_cidr: str = PACKET_PEER_CIDR
) -> Topology:
    """A veth pair: kernel peer with ``peer_cidr`` in one namespace, the bare
    other end (no IP, offloads off) in the namespace the stack runs in."""
    check_test_address(stack_cidr)
    peer = tb.netns("peer")
    peer.sysctl("net.ipv4.tcp_tw_reuse", "1")
    host = tb.netns("host")
    peer_if, host_if = tb.veth(peer, host, ip_a=peer_cidr)
    return Topology("packet", tb, host, peer, host_if, peer_if, stack_cidr, peer_cidr)


def topology(tb: Testbed, kind: str) -> Topology:
    """``tap_topology`` or ``packet_topology`` by name (for parametrising)."""
    if kind == "tap":
        return tap_topology(tb)
    if kind == "packet":
        return packet_topology(tb)
    raise ValueError(f"unknown topology {kind!r} (tap or packet)")


def start_ustack(ns: Netns, args: Sequence[str], timeout: float = 10.0) -> UstackProcess:
    """Module-level spelling of :meth:`Testbed.start_ustack`."""
    return ns.testbed.start_ustack(ns, args, timeout)


# --------------------------------------------------------------------------
# python -m ustack_testbed {list,reap}
# --------------------------------------------------------------------------


def _iter_ours() -> Iterator[str]:
    for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split(" ", 1)[0]
        if owner_pid(name) is not None:
            yield name


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["list"]:
        for name in _iter_ours():
            print(name)
        return 0
    if args == ["reap"]:
        for name in reap_stale():
            print(f"deleted {name}")
        return 0
    print("usage: python -m ustack_testbed {list|reap}", file=sys.stderr)
    return 2

