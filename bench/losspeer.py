"""One timed transfer for bench_loss.py, from the left side of the relay.

    python3 bench/losspeer.py ustack|kernel send|recv --to IP:PORT --bytes N
        [--seed S] [--timeout T] [--link packet:IF --ip CIDR [--pcap FILE]]

``ustack``: a ustack Stack on ``--link`` (``ustack.bringup.LinkedStack``)
moves the data with ``ustack.apps.transfer.Transfer``, the code of ``ustack
tcp send|recv``; ``kernel``: the kernel's TCP through a plain socket.  Both
are timed the same way: from the start (ustack: the stack's start, ARP and
handshake included; kernel: before ``connect()``, the neighbour cache
flushed by the caller) until ``send``: every byte and our FIN acknowledged
(ustack ``fin_acked``; kernel SIOCOUTQ == 0 after ``shutdown``, which counts
the FIN) or ``recv``: the peer's FIN.  The data sent is tcpgen's pattern
(``tcpgen.pattern_bytes(seed, N)``); what is received is hashed.

Prints one JSON line: ok, seconds, bytes, sha256, error, and the counters
(ustack: the stack's nonzero counters and the device's; kernel: the nonzero
changes of this namespace's /proc/net/netstat and snmp TCP counters).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import hashlib
import io
import json
import resource
import socket
import struct
import sys
import time
from typing import Any

import tcpgen  # bench/tcpgen.py: run as a script, bench/ is on sys.path

CHUNK = 256 * 1024
SIOCOUTQ = 0x5411  # TIOCOUTQ: bytes (and FIN) not yet acknowledged


class HashSink:
    """A write-only stream that keeps the count and SHA-256 of what it got."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def tcp_counters() -> dict[str, int]:
    """This namespace's Tcp and TcpExt counters (/proc/net/snmp, netstat)."""
    out: dict[str, int] = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        with open(path) as f:
            lines = f.read().splitlines()
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            kind, _, keys = names.partition(":")
            if kind not in ("Tcp", "TcpExt"):
                continue
            for k, v in zip(keys.split(), values.partition(":")[2].split(), strict=False):
                out[kind + k] = int(v)
    return out


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def run_ustack(a: argparse.Namespace, host: str, port: int) -> dict[str, Any]:
    from ustack import purepy
    from ustack.apps.transfer import Transfer
    from ustack.bringup import LinkedStack, LinkOptions

    result: dict[str, Any] = {"build": purepy.describe()}
    sink = HashSink()
    stream: Any = io.BytesIO(tcpgen.pattern_bytes(a.seed, a.bytes)) if a.dir == "send" else sink
    with LinkedStack(LinkOptions(a.link, a.ip, pcap=a.pcap)) as up:
        job = Transfer(up.stack, (host, port), a.dir, stream, timeout=a.timeout)
        try:
            job.run()
        except OSError as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
        result["seconds"] = job.seconds
        result["bytes"] = job.nbytes
        result["counters"] = up.stack.counters.snapshot(nonzero=True)
        assert up.device is not None
        result["device"] = {k: v for k, v in up.device.stats().items() if v}
    if a.dir == "recv":
        result["sha256"] = sink.h.hexdigest()
    return result


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def outq(s: socket.socket) -> int:
    raw = fcntl.ioctl(s.fileno(), SIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("i", raw)[0])


def run_kernel(a: argparse.Namespace, host: str, port: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    before = tcp_counters()
    sink = HashSink()
    # Made before the clock starts, as the ustack side's stream is.
    data = memoryview(tcpgen.pattern_bytes(a.seed, a.bytes)) if a.dir == "send" else b""
    t0 = time.monotonic()
    nbytes = 0
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if a.cc:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, a.cc.encode())
            s.settimeout(a.timeout)
            s.connect((host, port))
            cc = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
            result["cc"] = cc.split(b"\0", 1)[0].decode()
            if a.dir == "send":
                s.sendall(data)
                nbytes = len(data)
                s.shutdown(socket.SHUT_WR)
                # Done when the peer has acknowledged every byte and the FIN.
                last, idle_from = -1, time.monotonic()
                while (q := outq(s)) > 0:
                    now = time.monotonic()
                    if q != last:
                        last, idle_from = q, now
                    elif now - idle_from > a.timeout:
                        raise TimeoutError(errno.ETIMEDOUT, f"{q} bytes unacknowledged")
                    time.sleep(0.0002)
            else:
                while chunk := s.recv(CHUNK):
                    sink.write(chunk)
                nbytes = sink.n
    except OSError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        nbytes = nbytes or sink.n
    result["seconds"] = time.monotonic() - t0
    result["bytes"] = nbytes
    if a.dir == "recv":
        result["sha256"] = sink.h.hexdigest()
    result["counters"] = delta(before, tcp_counters())
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="one timed transfer (bench_loss.py)")
    p.add_argument("stack", choices=("ustack", "kernel"))
    p.add_argument("dir", choices=("send", "recv"))
    p.add_argument("--to", required=True, metavar="IP:PORT")
    p.add_argument("--bytes", type=int, required=True)
    p.add_argument("--seed", type=int, default=1, help="tcpgen's pattern seed")
    p.add_argument("--timeout", type=float, default=10.0, help="idle seconds before giving up")
    p.add_argument("--cc", help="kernel: TCP_CONGESTION of the socket (else the default)")
    p.add_argument("--link", help="ustack: packet:IFACE")
    p.add_argument("--ip", help="ustack: our CIDR")
    p.add_argument("--pcap", help="ustack: write every frame to FILE")
    a = p.parse_args(argv)
    host, _, port = a.to.rpartition(":")
    if a.stack == "ustack" and not (a.link and a.ip):
        p.error("ustack needs --link and --ip")
    run = run_ustack if a.stack == "ustack" else run_kernel
    before = cpu_seconds()
    result = run(a, host, int(port))
    # This process's CPU time (user + system) over the transfer: for ustack
    # near ``seconds`` means the stack, not the network, set the pace.
    result["cpu_seconds"] = cpu_seconds() - before
    result["ok"] = "error" not in result and result.get("bytes") == a.bytes
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
