"""Helpers for the TCP interop tests (not tests themselves).

The Linux kernel is the peer: these put kernel TCP endpoints into a testbed
namespace and report what they moved, so a test can compare SHA-256 digests
end to end:

- ``make_test_file``: a deterministic file (seeded), with its SHA-256.
- ``KernelSink`` / ``KernelSource`` / ``KernelEcho``: one-connection kernel
  servers in a namespace (receive and hash / send a file / echo), each in a
  thread that stops by itself at its deadline.
- ``kernel_send`` / ``kernel_recv`` / ``kernel_echo``: kernel clients.
- ``tcp_sockets``: the kernel's TCP sockets in a namespace (``ss``), to show
  that nothing is left stuck after a test.
- ``expert_problems`` / ``expert_frames``: tshark's expert info for a capture,
  limited to malformed segments and bad checksums sent by one address.

A kernel socket belongs to the namespace it was created in (``Netns.socket``
creates it there), so the servers and clients run as threads of the test
process; no subprocess per transfer.  Every blocking call has a timeout.
"""

from __future__ import annotations

import errno
import hashlib
import random
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ustack_testbed import Netns

__all__ = [
    "DEFAULT_FILE_SIZE",
    "KernelEcho",
    "KernelSink",
    "KernelSource",
    "SocketState",
    "TestFile",
    "Transfer",
    "TransferError",
    "expert_frames",
    "expert_problems",
    "file_sha256",
    "kernel_echo",
    "kernel_recv",
    "kernel_send",
    "make_test_file",
    "tcp_sockets",
    "write_pcap",
]

DEFAULT_FILE_SIZE = 20 * 1024 * 1024
_CHUNK = 256 * 1024
# Socket operations wake up at least this often to check their deadline.
_TICK = 0.5


# --------------------------------------------------------------------------
# Test data
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestFile:
    """A file of ``size`` seeded pseudo-random bytes and its SHA-256 (hex)."""

    __test__ = False  # not a pytest test class despite the name

    path: Path
    size: int
    sha256: str
    seed: int

    def read(self) -> bytes:
        return self.path.read_bytes()


def make_test_file(directory: Path, size: int = DEFAULT_FILE_SIZE, seed: int = 1) -> TestFile:
    """Write ``size`` bytes from ``random.Random(seed)`` into ``directory``.

    Same seed and size, same bytes, on any machine (Python guarantees
    ``randbytes`` reproducible for a seed).  Random data has no period, so a
    segment delivered at the wrong offset always changes the digest.
    """
    if size < 0:
        raise ValueError("size must be >= 0")
    data = random.Random(seed).randbytes(size)
    path = Path(directory) / f"tcp-test-{seed}-{size}.bin"
    path.write_bytes(data)
    return TestFile(path, size, hashlib.sha256(data).hexdigest(), seed)


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# Kernel endpoints
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transfer:
    """What one kernel endpoint moved over one connection.

    ``received``/``sha256``: the bytes that arrived and their digest;
    ``sent``: bytes handed to the kernel; ``eof``: the peer's FIN arrived;
    ``error``: why it stopped early (``"timeout ..."``, ``"ECONNRESET"``,
    ...), None when it finished as intended.
    """

    received: int
    sha256: str
    sent: int
    seconds: float
    eof: bool
    peer: tuple[str, int] | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def tick(self, sock: socket.socket) -> None:
        """Arm ``sock`` for the next wait; TimeoutError once past the deadline."""
        left = self.left()
        if left <= 0:
            raise TimeoutError("deadline passed")
        sock.settimeout(min(left, _TICK))


class TransferError(Exception):
    """The peer broke the protocol of a helper (echoed too much, closed early)."""


_FAILURES = (OSError, TimeoutError, TransferError)


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, f"E{exc.errno}")
    return str(exc)


def _no_transfer(error: str, peer: tuple[str, int] | None = None) -> Transfer:
    return Transfer(0, hashlib.sha256().hexdigest(), 0, 0.0, False, peer, error)


class _Conn:
    """Counters for one connection, filled by the helpers below."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self.sock = sock
        self.deadline = deadline
        self.hash = hashlib.sha256()
        self.received = 0
        self.sent = 0
        self.eof = False
        self.t0 = time.monotonic()

    def recv_until_eof(self, limit: int | None = None) -> None:
        """Read (hashing) until the peer's FIN or ``limit`` bytes."""
        while limit is None or self.received < limit:
            self.deadline.tick(self.sock)
            want = _CHUNK if limit is None else min(_CHUNK, limit - self.received)
            try:
                data = self.sock.recv(want)
            except TimeoutError:
                continue  # one tick passed; tick() raises at the deadline
            if not data:
                self.eof = True
                return
            self.hash.update(data)
            self.received += len(data)

    def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        off = 0
        while off < len(view):
            self.deadline.tick(self.sock)
            try:
                n = self.sock.send(view[off : off + _CHUNK])
            except TimeoutError:
                continue
            off += n
            self.sent += n

    def result(self, peer: tuple[str, int] | None, error: str | None) -> Transfer:
        return Transfer(
            received=self.received,
            sha256=self.hash.hexdigest(),
            sent=self.sent,
            seconds=time.monotonic() - self.t0,
            eof=self.eof,
            peer=peer,
            error=error,
        )


def _data_of(data: bytes | Path | str | TestFile) -> bytes:
    if isinstance(data, TestFile):
        return data.read()
    if isinstance(data, (Path, str)):
        return Path(data).read_bytes()
    return data


class _KernelServer:
    """One listening kernel socket in ``ns``; a thread serves one connection.

    ``port=0`` picks a free port (see ``.port``).  The thread stops by itself
    ``timeout`` seconds after start whatever happens; ``result()`` waits for
    it and returns the Transfer.
    """

    def __init__(self, ns: Netns, addr: str, port: int = 0, timeout: float = 60.0) -> None:
        self.addr = addr
        self._deadline = _Deadline(timeout)
        self._result: Transfer | None = None
        self._listener = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((addr, port))
            self._listener.listen(1)
        except OSError:
            self._listener.close()
            raise
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        peer: tuple[str, int] | None = None
        conn: _Conn | None = None
        try:
            while True:
                self._deadline.tick(self._listener)
                try:
                    sock, peer = self._listener.accept()
                    break
                except TimeoutError:
                    continue
            with sock:
                conn = _Conn(sock, self._deadline)
                self._serve(conn)
            self._result = conn.result(peer, None)
        except _FAILURES as exc:
            error = _error_name(exc)
            self._result = _no_transfer(error, peer) if conn is None else conn.result(peer, error)
        finally:
            self._listener.close()

    def _serve(self, conn: _Conn) -> None:
        raise NotImplementedError

    def result(self, timeout: float | None = None) -> Transfer:
        """Wait for the connection to finish (at most until the deadline)."""
        wait = self._deadline.left() + 5.0 if timeout is None else timeout
        self._thread.join(max(wait, 0.0))
        if self._result is None:
            raise TimeoutError(f"{type(self).__name__} on {self.addr}:{self.port} still running")
        return self._result

    def close(self) -> None:
        """Stop waiting for a client (the thread ends within one tick)."""
        self._deadline.end = 0.0
        self._thread.join(_TICK + 5.0)

    def __enter__(self) -> _KernelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KernelSink(_KernelServer):
    """Receives on one connection until EOF (or ``nbytes``) and hashes it.

    With ``nbytes`` it stops reading at that many bytes and closes (a peer
    still sending then gets a RST, as from any server that stops reading).
    """

    def __init__(
        self,
        ns: Netns,
        addr: str,
        port: int = 0,
        nbytes: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.nbytes = nbytes
        super().__init__(ns, addr, port, timeout)

    def _serve(self, conn: _Conn) -> None:
        conn.recv_until_eof(self.nbytes)


class KernelSource(_KernelServer):
    """Sends ``data`` (bytes, a path or a TestFile) on one connection, then
    FIN, then reads (and hashes) until the peer's FIN."""

    def __init__(
        self,
        ns: Netns,
        addr: str,
        data: bytes | Path | str | TestFile,
        port: int = 0,
        timeout: float = 60.0,
    ) -> None:
        self.data = _data_of(data)
        super().__init__(ns, addr, port, timeout)

    def _serve(self, conn: _Conn) -> None:
        conn.send_all(self.data)
        conn.sock.shutdown(socket.SHUT_WR)
        conn.recv_until_eof()


class KernelEcho(_KernelServer):
    """Echoes every byte of one connection back; closes after the peer's FIN.

    ``received``/``sha256`` describe what arrived; everything is sent back.
    """

    def _serve(self, conn: _Conn) -> None:
        while True:
            conn.deadline.tick(conn.sock)
            try:
                data = conn.sock.recv(_CHUNK)
            except TimeoutError:
                continue
            if not data:
                conn.eof = True
                return
            conn.hash.update(data)
            conn.received += len(data)
            conn.send_all(data)


def _connect(ns: Netns, addr: str, port: int, deadline: _Deadline) -> socket.socket:
    sock = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(max(min(deadline.left(), 10.0), 0.001))
        sock.connect((addr, port))
    except OSError:
        sock.close()
        raise
    return sock


def _client(ns: Netns, addr: str, port: int, timeout: float, body: _ClientBody) -> Transfer:
    deadline = _Deadline(timeout)
    conn: _Conn | None = None
    try:
        with _connect(ns, addr, port, deadline) as sock:
            conn = _Conn(sock, deadline)
            body(conn)
            return conn.result((addr, port), None)
    except _FAILURES as exc:
        if conn is None:
            return _no_transfer(_error_name(exc))
        return conn.result((addr, port), _error_name(exc))


class _ClientBody:
    def __call__(self, conn: _Conn) -> None:
        raise NotImplementedError


class _Send(_ClientBody):
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __call__(self, conn: _Conn) -> None:
        conn.send_all(self.data)
        conn.sock.shutdown(socket.SHUT_WR)
        conn.recv_until_eof()


class _Recv(_ClientBody):
    def __init__(self, nbytes: int | None) -> None:
        self.nbytes = nbytes

    def __call__(self, conn: _Conn) -> None:
        conn.recv_until_eof(self.nbytes)


class _Echo(_ClientBody):
    """Send from a second thread while reading: a 20 MB echo would deadlock
    if we only read after sending (both windows full)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __call__(self, conn: _Conn) -> None:
        errors: list[BaseException] = []

        def send() -> None:
            try:
                conn.send_all(self.data)
                conn.sock.shutdown(socket.SHUT_WR)
            except _FAILURES as exc:
                errors.append(exc)

        sender = threading.Thread(target=send, name="kernel-echo-send", daemon=True)
        sender.start()
        try:
            conn.recv_until_eof()
        finally:
            sender.join(max(conn.deadline.left(), 0.0) + _TICK)
        if errors:
            raise errors[0]
        if conn.received != len(self.data):
            raise TransferError(f"echo returned {conn.received} of {len(self.data)} bytes")


def kernel_send(
    ns: Netns, addr: str, port: int, data: bytes | Path | str | TestFile, timeout: float = 60.0
) -> Transfer:
    """Connect from ``ns``, send ``data``, FIN, then read until the peer's FIN.

    The peer's FIN is what says it has read everything (a discard service
    closes at our FIN); ``received`` counts anything it sent back.
    """
    return _client(ns, addr, port, timeout, _Send(_data_of(data)))


def kernel_recv(
    ns: Netns, addr: str, port: int, nbytes: int | None = None, timeout: float = 60.0
) -> Transfer:
    """Connect from ``ns`` and read until EOF (or ``nbytes``), hashing."""
    return _client(ns, addr, port, timeout, _Recv(nbytes))


def kernel_echo(
    ns: Netns, addr: str, port: int, data: bytes | Path | str | TestFile, timeout: float = 60.0
) -> Transfer:
    """Send ``data`` to an echo service while reading the echo back.

    Ok means every byte came back, followed by EOF: compare ``sha256`` with
    the data's digest.
    """
    return _client(ns, addr, port, timeout, _Echo(_data_of(data)))


@dataclass(frozen=True, slots=True)
class SocketState:
    """One line of ``ss -tan``: state (``ESTAB``, ``TIME-WAIT``, ...), ends."""

    state: str
    local: str
    peer: str

    @property
    def local_port(self) -> int:
        return int(self.local.rpartition(":")[2])

    @property
    def peer_port(self) -> int:
        return int(self.peer.rpartition(":")[2]) if self.peer.rpartition(":")[2].isdigit() else 0


def tcp_sockets(ns: Netns, port: int | None = None) -> list[SocketState]:
    """The kernel's TCP sockets in ``ns`` (all states), optionally only those
    with ``port`` at either end."""
    out = ns.run(["ss", "-H", "-t", "-a", "-n"], timeout=10).stdout
    socks: list[SocketState] = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        s = SocketState(parts[0], parts[3], parts[4])
        if port is None or port in (s.local_port, s.peer_port):
            socks.append(s)
    return socks


# --------------------------------------------------------------------------
# Captures
# --------------------------------------------------------------------------


def write_pcap(path: Path | str, frames: Iterable[bytes], snaplen: int = 262144) -> None:
    """A classic pcap file (Ethernet) of ``frames``, one microsecond apart."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", i // 1_000_000, i % 1_000_000, len(frame), len(frame)))
            f.write(frame)


def _tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        raise FileNotFoundError("tshark not found (scripts/install-system-deps.sh)")
    return path


def _checksum_prefs(checksums: bool) -> list[str]:
    # Wireshark does not verify checksums unless asked (they are often
    # offloaded to the NIC); we want them verified.
    if not checksums:
        return []
    return [
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
    ]


_SECTION_RE = re.compile(r"^(Errors|Warns|Notes|Chats|Comments) \(\d+\)$")
_ROW_RE = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(.*\S)\s*$")
# Warnings about normal TCP life under loss (retransmission, duplicate ACK,
# previous segment not captured, ...) are not problems; these groups are.
_BAD_GROUPS = ("Malformed", "Checksum")


def expert_problems(pcap: Path | str, src_ip: str, checksums: bool = True) -> list[str]:
    """Malformed packets and bad checksums that ``src_ip`` sent, per tshark.

    Runs ``tshark -r PCAP -q -z expert,warn,ip.src==SRC`` with checksum
    verification on and returns the offending summary lines as
    ``"Error Checksum TCP: Bad checksum [should be 0x1234] (x3)"``: every
    error-level item, and warnings in the Malformed or Checksum groups.  An
    empty list means a clean capture.

    ``checksums=False`` skips checksum verification: frames captured on the
    sending host with checksum offload on (``--vnet-hdr``) carry only a
    partial checksum that the kernel completes later.
    """
    cmd = [_tshark(), "-n", "-r", str(pcap), "-q", *_checksum_prefs(checksums)]
    cmd += ["-z", f"expert,warn,ip.src=={src_ip}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"tshark failed on {pcap}: {proc.stderr.strip()}")
    problems: list[str] = []
    section = ""
    for line in proc.stdout.splitlines():
        m = _SECTION_RE.match(line.strip())
        if m:
            section = m.group(1)
            continue
        row = _ROW_RE.match(line)
        if row is None or row.group(1) == "Frequency":
            continue
        count, group, proto, summary = row.groups()
        if section == "Errors" or (section == "Warns" and group in _BAD_GROUPS):
            problems.append(f"{section[:-1]} {group} {proto}: {summary} (x{count})")
    return problems


_SEV_WARN = 0x00600000
_GROUP_NAMES = {0x01000000: "Checksum", 0x07000000: "Malformed"}


def expert_frames(pcap: Path | str, src_ip: str, checksums: bool = True) -> list[str]:
    """The frames behind ``expert_problems``: ``"frame 12: Bad checksum ..."``.

    For diagnosis: tells which frame of a capture to open in Wireshark.
    """
    cmd = [_tshark(), "-n", "-r", str(pcap), *_checksum_prefs(checksums)]
    cmd += ["-Y", f"_ws.expert.severity >= {_SEV_WARN} && ip.src=={src_ip}"]
    cmd += ["-T", "fields", "-E", "separator=\t", "-E", "aggregator=\x1f"]
    cmd += ["-e", "frame.number", "-e", "_ws.expert.severity", "-e", "_ws.expert.group"]
    cmd += ["-e", "_ws.expert.message"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"tshark failed on {pcap}: {proc.stderr.strip()}")
    out: list[str] = []
    for line in proc.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) != 4:
            continue
        number, sevs, groups, messages = (f.split("\x1f") for f in fields)
        for sev, group, message in zip(sevs, groups, messages, strict=False):
            if not (sev.isdigit() and group.isdigit()):
                continue
            name = _GROUP_NAMES.get(int(group))
            if int(sev) > _SEV_WARN or name is not None:
                out.append(f"frame {number[0]}: {message}")
    return out
