"""Build and drive the C TCP load generator and kernel servers (bench/tcpgen.c).

The tool is C for the same reason as loadgen.c: a Python client would
measure itself, not the stack on the other end.  It is compiled on demand
with ``cc -O2`` into bench/bin/ (git ignored) and rebuilt when the source is
newer than the binary (cbuild.py).

This module builds argument vectors (``CrrSpec``, ``BulkSpec``,
``ServerSpec``), parses the result lines, runs a server and waits for its
``ready:`` line (``ServerProcess``), and computes the data stream the tool
sends (``pattern_bytes``/``pattern_sha256``), so a transfer can be checked
against an independent implementation.
"""

from __future__ import annotations

import functools
import hashlib
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbuild import compile_c

BENCH = Path(__file__).resolve().parent
SOURCE = BENCH / "tcpgen.c"
BINARY = BENCH / "bin" / "tcpgen"

#: The pattern repeats with this period (a prime, see tcpgen.c).
PERIOD = 1_048_573
_MASK64 = (1 << 64) - 1
SERVER_MODES = ("echo", "echo-line", "discard", "source")


class TcpgenError(RuntimeError):
    """No compiler, a failed build, a server that did not start, or a run
    that printed no (or a malformed) result line."""


def build() -> Path:
    """The tcpgen binary, compiled first if missing or older than its source."""
    # -ldl: libcrypto is loaded at run time (glibc >= 2.34 has dlopen in libc,
    # older ones need the flag; it is harmless on the new ones).
    return compile_c(SOURCE, BINARY, ["-ldl"], error=TcpgenError)


# --------------------------------------------------------------------------
# The data stream
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def pattern_period(seed: int) -> bytes:
    """One period of the stream for ``-S seed``: splitmix64 words, little-endian."""
    out = bytearray()
    state = seed & _MASK64
    for _ in range((PERIOD + 7) // 8):
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        out += (z ^ (z >> 31)).to_bytes(8, "little")
    return bytes(out[:PERIOD])


def pattern_bytes(seed: int, n: int) -> bytes:
    """The first ``n`` bytes tcpgen sends with ``-S seed``."""
    period = pattern_period(seed)
    reps, rest = divmod(n, PERIOD)
    return period * reps + period[:rest]


def pattern_sha256(seed: int, n: int) -> str:
    """SHA-256 (hex) of the first ``n`` bytes of the stream, without holding them."""
    period = pattern_period(seed)
    h = hashlib.sha256()
    reps, rest = divmod(n, PERIOD)
    for _ in range(reps):
        h.update(period)
    h.update(period[:rest])
    return h.hexdigest()


# --------------------------------------------------------------------------
# Result lines
# --------------------------------------------------------------------------


def parse_kv(line: str) -> dict[str, str]:
    """``"a=1 b=x"`` -> ``{"a": "1", "b": "x"}`` (words without ``=`` ignored)."""
    return dict(word.split("=", 1) for word in line.split() if "=" in word)


def parse_errors(text: str) -> dict[str, int]:
    """``"ECONNREFUSED:2,EOF:1"`` -> dict; ``"-"`` -> {}."""
    if text in ("", "-"):
        return {}
    out: dict[str, int] = {}
    for item in text.split(","):
        name, _, count = item.partition(":")
        out[name] = int(count)
    return out


def _last_line(text: str, prefix: str) -> dict[str, str]:
    for line in reversed(text.splitlines()):
        if line.startswith(prefix):
            return parse_kv(line)
    raise TcpgenError(f"tcpgen printed no {prefix!r} line: {text.strip()[-300:]!r}")


@dataclass(frozen=True, slots=True)
class CrrResult:
    """``crr``: connections completed (connect, line out, line back, close)."""

    conns: int
    seconds: float
    rate: float
    fail: int
    errors: dict[str, int]
    bad: int
    p50_us: float
    p99_us: float
    cpu: float
    wait: float


def parse_crr(text: str) -> CrrResult:
    kv = _last_line(text, "conns=")
    try:
        return CrrResult(
            conns=int(kv["conns"]),
            seconds=float(kv["seconds"]),
            rate=float(kv["rate"]),
            fail=int(kv["fail"]),
            errors=parse_errors(kv["errors"]),
            bad=int(kv["bad"]),
            p50_us=float(kv["p50_us"]),
            p99_us=float(kv["p99_us"]),
            cpu=float(kv["cpu"]),
            wait=float(kv["wait"]),
        )
    except (KeyError, ValueError) as exc:
        raise TcpgenError(f"bad crr result line: {kv!r}") from exc


@dataclass(frozen=True, slots=True)
class BulkResult:
    """``bulk-send``/``bulk-recv``: ``bytes`` moved while counting, ``total``
    over the whole connection, ``sha256`` of all ``total`` bytes (None unless
    hashed), and why it ended (time, count, eof, stall, reset, undrained,
    error:ERRNO, connect:ERRNO, signal)."""

    bytes: int
    seconds: float
    mb_per_s: float
    total: int
    sha256: str | None
    end: str
    cpu: float
    wait: float

    @property
    def ok(self) -> bool:
        """Ended as planned: by time, by count, or (receiving) at the peer's EOF."""
        return self.end in ("time", "count", "eof")


def parse_bulk(text: str) -> BulkResult:
    kv = _last_line(text, "bytes=")
    try:
        return BulkResult(
            bytes=int(kv["bytes"]),
            seconds=float(kv["seconds"]),
            mb_per_s=float(kv["MBps"]),
            total=int(kv["total"]),
            sha256=None if kv["sha256"] == "-" else kv["sha256"],
            end=kv["end"],
            cpu=float(kv["cpu"]),
            wait=float(kv["wait"]),
        )
    except (KeyError, ValueError) as exc:
        raise TcpgenError(f"bad bulk result line: {kv!r}") from exc


@dataclass(frozen=True, slots=True)
class ConnReport:
    """One server connection (``-v``): bytes each way, hashes, how it ended."""

    peer: str
    rx: int
    tx: int
    seconds: float
    sha256_rx: str | None
    sha256_tx: str | None
    end: str


@dataclass(frozen=True, slots=True)
class ServerSummary:
    served: int
    rx: int
    tx: int
    seconds: float
    errors: dict[str, int]
    conns: list[ConnReport] = field(default_factory=list)


def parse_server(text: str) -> ServerSummary:
    conns: list[ConnReport] = []
    try:
        for line in text.splitlines():
            if line.startswith("conn "):
                kv = parse_kv(line)
                conns.append(
                    ConnReport(
                        peer=kv["peer"],
                        rx=int(kv["rx"]),
                        tx=int(kv["tx"]),
                        seconds=float(kv["seconds"]),
                        sha256_rx=None if kv["sha256_rx"] == "-" else kv["sha256_rx"],
                        sha256_tx=None if kv["sha256_tx"] == "-" else kv["sha256_tx"],
                        end=kv["end"],
                    )
                )
        kv = _last_line(text, "served=")
        return ServerSummary(
            served=int(kv["served"]),
            rx=int(kv["rx"]),
            tx=int(kv["tx"]),
            seconds=float(kv["seconds"]),
            errors=parse_errors(kv["errors"]),
            conns=conns,
        )
    except (KeyError, ValueError) as exc:
        raise TcpgenError(f"bad server output: {text.strip()[-300:]!r}") from exc


# --------------------------------------------------------------------------
# Argument vectors
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CrrSpec:
    """Connection-per-request load: ``concurrency`` connections in flight."""

    addr: str
    port: int = 7
    concurrency: int = 32
    size: int = 64
    seconds: float = 2.0
    warmup: float = 0.25
    count: int | None = None
    timeout_ms: float = 1000.0

    def argv(self, binary: Path) -> list[str]:
        a = [str(binary), "crr", "-a", self.addr, "-p", str(self.port)]
        a += ["-c", str(self.concurrency), "-s", str(self.size), "-t", str(self.seconds)]
        a += ["-u", str(self.warmup), "-T", str(self.timeout_ms)]
        if self.count is not None:
            a += ["-n", str(self.count)]
        return a


@dataclass(frozen=True, slots=True)
class BulkSpec:
    """One bulk connection: ``mode`` is ``bulk-send`` or ``bulk-recv``."""

    mode: str
    addr: str
    port: int
    seconds: float = 2.0
    warmup: float = 0.25
    nbytes: int | None = None
    hash: bool = False
    seed: int = 1
    file: str | None = None
    idle_ms: float = 5000.0
    io: int | None = None
    sockbuf: int | None = None

    def argv(self, binary: Path) -> list[str]:
        if self.mode not in ("bulk-send", "bulk-recv"):
            raise ValueError(f"bulk mode must be bulk-send or bulk-recv, not {self.mode!r}")
        a = [str(binary), self.mode, "-a", self.addr, "-p", str(self.port)]
        a += ["-t", str(self.seconds), "-u", str(self.warmup), "-T", str(self.idle_ms)]
        a += ["-S", str(self.seed)]
        if self.nbytes is not None:
            a += ["-n", str(self.nbytes)]
        if self.hash:
            a.append("-H")
        if self.file is not None:
            a += ["-f", self.file]
        if self.io is not None:
            a += ["-b", str(self.io)]
        if self.sockbuf is not None:
            a += ["-B", str(self.sockbuf)]
        return a


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """A kernel server that stops by itself after ``seconds`` or ``max_conns``."""

    mode: str
    addr: str
    port: int
    seconds: float = 60.0
    max_conns: int | None = None
    bytes_per_conn: int | None = None
    hash: bool = False
    verbose: bool = False
    seed: int = 1
    file: str | None = None
    cc: str | None = None  # TCP_CONGESTION of the listener (and so its connections)

    def argv(self, binary: Path) -> list[str]:
        if self.mode not in SERVER_MODES:
            raise ValueError(f"server mode must be one of {SERVER_MODES}, not {self.mode!r}")
        a = [str(binary), "server", "-m", self.mode, "-a", self.addr, "-p", str(self.port)]
        a += ["-t", str(self.seconds), "-S", str(self.seed)]
        if self.max_conns is not None:
            a += ["-n", str(self.max_conns)]
        if self.bytes_per_conn is not None:
            a += ["-N", str(self.bytes_per_conn)]
        if self.hash:
            a.append("-H")
        if self.verbose:
            a.append("-v")
        if self.file is not None:
            a += ["-f", self.file]
        if self.cc is not None:
            a += ["-C", self.cc]
        return a


# --------------------------------------------------------------------------
# A running server
# --------------------------------------------------------------------------


#: ``local_popen`` or ``Netns.popen``: takes the argv and Popen keywords.
Popener = Callable[..., "subprocess.Popen[Any]"]


def local_popen(cmd: list[str], /, **kw: Any) -> subprocess.Popen[Any]:
    """Start ``cmd`` in this namespace (loopback tests)."""
    return subprocess.Popen(cmd, **kw)


class ServerProcess:
    """A tcpgen server, started and waited for until it listens.

    ``popen`` starts the argv: ``local_popen`` (loopback tests) or a
    namespace's ``popen``; ``prefix`` goes in front (``taskset -c 1``).  A
    thread reads its output as it comes, so a chatty server (``verbose``)
    never blocks on a full pipe.  ``stop()`` ends it (SIGTERM: it prints its
    summary and exits) and parses what it printed; ``wait()`` waits for it to
    stop by itself.
    """

    def __init__(
        self,
        spec: ServerSpec,
        popen: Popener = local_popen,
        prefix: Sequence[str] = (),
        ready_timeout: float = 10.0,
    ) -> None:
        self.spec = spec
        self._lines: list[str] = []
        self._ready = threading.Event()
        self._errfile = tempfile.TemporaryFile(mode="w+", prefix="tcpgen-stderr-")  # noqa: SIM115
        self._stderr = ""
        self.popen: subprocess.Popen[str] = popen(
            [*prefix, *spec.argv(build())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._errfile,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="tcpgen-server", daemon=True)
        self._reader.start()
        if (
            not self._ready.wait(ready_timeout)
            or not self._lines[:1]
            or not (self._lines[0].startswith("ready:"))
        ):
            self._finish(timeout=5)
            raise TcpgenError(
                f"tcpgen server ({spec.mode} on {spec.addr}:{spec.port}) did not start: "
                f"{self.output().strip()} {self.stderr().strip()}".strip()
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.append(line)
            self._ready.set()
        self._ready.set()  # EOF: it exited before (or after) being ready

    def output(self) -> str:
        return "".join(self._lines)

    def stderr(self) -> str:
        if self._errfile.closed:
            return self._stderr
        self._errfile.flush()
        self._errfile.seek(0)
        return self._errfile.read()

    def _finish(self, timeout: float) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)
        self._reader.join(timeout=5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._stderr = self.stderr()
        self._errfile.close()

    def wait(self, timeout: float) -> ServerSummary:
        """Wait for the server to stop by itself (``max_conns`` reached)."""
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self._finish(timeout=5)
            raise TcpgenError(f"tcpgen server still running after {timeout} s") from exc
        self._finish(timeout=5)
        return parse_server(self.output())

    def stop(self, timeout: float = 5.0) -> ServerSummary:
        """End the server now and return what it served."""
        if not self._errfile.closed:
            self._finish(timeout)
        return parse_server(self.output())

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._errfile.closed:
            self._finish(timeout=5)
