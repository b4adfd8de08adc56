"""The hot paths in one process: two Stacks over an in-memory pipe, no root.

Both ends are ustack, stepped with a fake clock, so the figure is the
Python cost of the TCP/IP path alone (no system calls, no scheduler):
``--conns`` connections each send a ``--size``-byte message and wait for
its echo (the server echoes from its native ``on_event`` callback).  The
result is CPU microseconds per echo, both stacks together; ``--opcodes``
also counts CPython bytecodes per echo by function (slow: a tracing run),
which is the stable figure to compare changes with on a noisy machine
(counted in the pure build: compiled code runs no bytecodes).
``--udp`` does the same for UDP: ``--conns`` datagrams of ``--size`` bytes
in flight, echoed by the ``udp-echo`` service of ``ustack up``.

Both builds run in the same invocation, each in its own process (the build
is chosen at import: ``USTACK_PURE=1`` selects the sources), one run of each
in turn so that the machine's noise falls on both alike; the ratio is
pure / compiled per round, min/median/max.  ``--build compiled|pure`` runs
one build only.  A ``build:`` line names what ran; without the compiled
build (not installed) it stops with status 1 unless given ``--build pure``.

    python3 bench/bench_inproc.py [--quick] [--udp] [--echoes N] [--runs R] [--opcodes]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import time
from types import FrameType
from typing import Any

import harness  # bench/harness.py: run as a script, bench/ is on sys.path
from harness import BuildUnavailable

from ustack.apps import services
from ustack.link.pipe import pipe_pair
from ustack.stack import Stack
from ustack.tcp.connection import Event
from ustack.tcp.socket import TcpListener, TcpSocket

A_IP, B_IP, PORT = "198.18.0.1", "198.18.0.2", 7


class Pair:
    """Two Stacks on the ends of an in-memory pipe, stepped with a fake clock."""

    def __init__(self, size: int) -> None:
        da, db = pipe_pair(queue_len=100_000)
        self.a, self.b = Stack(), Stack()
        self.a.add_interface(da, f"{A_IP}/24")
        self.b.add_interface(db, f"{B_IP}/24")
        self.now = 1000.0
        self.size = size
        self.msg = b"m" * size
        self.echoes = 0

    def step(self) -> None:
        self.now += 0.00002
        self.a.poll(self.now)
        self.b.poll(self.now)

    def run(self, n: int) -> None:
        goal = self.echoes + n
        while self.echoes < goal:
            self.step()


class PingPong(Pair):
    def __init__(self, conns: int, size: int) -> None:
        super().__init__(size)
        for stack in (self.a, self.b):
            stack.tcp.config.nodelay = True
        self.left: dict[TcpSocket, int] = {}
        listener = self.b.tcp_listen((B_IP, PORT))
        listener.on_accept = self._accept
        for _ in range(conns):
            sock = self.a.tcp_connect((B_IP, PORT))
            sock.on_event = self._client
        while len(self.left) < conns:
            self.step()

    @staticmethod
    def _server(sock: TcpSocket, ev: Event) -> None:
        if ev is Event.READABLE and sock.conn.readable_bytes:
            sock.send(sock.recv(1 << 20))

    def _accept(self, listener: TcpListener) -> None:
        while listener.accept_queue:
            listener.accept().on_event = self._server

    def _client(self, sock: TcpSocket, ev: Event) -> None:
        if ev is Event.CONNECTED:
            self.left[sock] = self.size
            sock.send(self.msg)
        elif ev is Event.READABLE and sock.conn.readable_bytes:
            rest = self.left[sock] - len(sock.recv(1 << 20))
            if rest <= 0:
                self.echoes += 1
                sock.send(self.msg)
                rest += self.size
            self.left[sock] = rest


class UdpPingPong(Pair):
    """``conns`` datagrams in flight between a UDP socket on one stack and the
    udp-echo service on the other (each echo answered sends the next)."""

    def __init__(self, conns: int, size: int) -> None:
        super().__init__(size)
        services.udp_echo(self.b, PORT)
        self.sock = self.a.udp_socket()
        self.sock.connect((B_IP, PORT))
        self.sock.on_datagram = self._echo
        self.step()  # ARP both ways before the measurement
        for _ in range(conns):
            self.sock.send(self.msg)
        self.step()

    def _echo(self, data: bytes, ip: bytes, port: int, data_sum: int) -> None:
        self.echoes += 1
        self.sock.send(self.msg)


def count_opcodes(pp: Pair, n: int) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        if event == "opcode":
            code = frame.f_code
            counts[f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_name}"] += 1
        return tracer

    sys.settrace(tracer)
    try:
        pp.run(n)
    finally:
        sys.settrace(None)
    return counts


def measure(a: argparse.Namespace) -> tuple[str, list[float]]:
    """This process's build (``purepy.describe()``), and µs per echo of each
    of ``a.runs`` runs."""
    from ustack import purepy

    pp: Pair = (UdpPingPong if a.udp else PingPong)(a.conns, a.size)
    pp.run(min(2000, a.echoes))  # warm-up
    costs = []
    for _ in range(a.runs):
        t0 = time.process_time()
        pp.run(a.echoes)
        costs.append((time.process_time() - t0) / a.echoes * 1e6)
    if a.opcodes:
        n = max(200, a.echoes // 10)
        counts = count_opcodes(pp, n)
        print(f"bytecodes per echo (both stacks, pure build): {sum(counts.values()) / n:.0f}")
        for name, v in counts.most_common(25):
            print(f"  {v / n:8.1f}  {name}")
    return purepy.describe(), costs


def child(a: argparse.Namespace, build: str, runs: int,
          opcodes: bool = False) -> tuple[str, list[float]]:
    """``runs`` runs in a fresh process of ``build``: its ``purepy.describe()``
    and its costs; the bytecode table passes through.  BuildUnavailable when
    that process runs the other build."""
    args = [sys.executable, __file__, "--child", "--runs", str(runs), "--echoes", str(a.echoes),
            "--conns", str(a.conns), "--size", str(a.size)]
    args += ["--udp"] * a.udp + ["--opcodes"] * opcodes
    out = subprocess.run(args, env=harness.build_env(build), capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"bench_inproc: the {build} run failed: {out.stderr.strip()[-500:]}")
    *table, last = out.stdout.strip().splitlines()
    describe, costs = json.loads(last)
    harness.check_build(build, describe)
    if table:
        print("\n".join(table))
    return describe, [float(c) for c in costs]


def fmt(costs: list[float]) -> str:
    med = statistics.median(costs)
    return (f"us per echo min / median / max {min(costs):.1f} / {med:.1f} / {max(costs):.1f}"
            f" ({1e6 / med:.0f} echoes/s)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3 runs of 2000 echoes")
    p.add_argument("--echoes", type=int, default=20000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--opcodes", action="store_true",
                   help="also count bytecodes per echo (in the pure build)")
    p.add_argument("--udp", action="store_true", help="UDP echo instead of TCP")
    harness.add_build_option(p, both=True)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.runs, a.echoes = 3, 2000
    if a.child:  # one build, this process: the figures as JSON on the last line
        print(json.dumps(measure(a)))
        return 0
    builds = harness.builds_of(a.build)
    try:
        describe, costs = run_builds(a, builds)
    except BuildUnavailable as exc:
        print(f"bench_inproc: {exc}", file=sys.stderr)
        return 1
    print(harness.build_line("; ".join(describe[b] for b in builds)))
    what = "UDP echo" if a.udp else "TCP ping-pong"
    for b in builds:
        print(f"in-process {what}, {a.size} B, {a.conns} in flight, both stacks, {b} build: "
              f"{fmt(costs[b])}")
    if len(builds) == 2:
        ratios = [p / c for p, c in zip(costs["pure"], costs["compiled"], strict=True)]
        print(f"compiled vs pure, same rounds: {statistics.median(ratios):.2f}x faster "
              f"(min / median / max {min(ratios):.2f} / {statistics.median(ratios):.2f}"
              f" / {max(ratios):.2f}; goal 3x)")
    return 0


def run_builds(a: argparse.Namespace,
               builds: tuple[str, ...]) -> tuple[dict[str, str], dict[str, list[float]]]:
    """The builds in turns, one run each per round: each build's
    ``purepy.describe()`` and its costs."""
    costs: dict[str, list[float]] = {b: [] for b in builds}
    describe: dict[str, str] = {}
    if a.opcodes:  # a run of its own: the tracing slows what follows it
        child(a, "pure", 1, opcodes=True)
    for _ in range(a.runs):
        for b in builds:
            describe[b], got = child(a, b, 1)
            costs[b] += got
    return describe, costs

if __name__ == "__main__":
    sys.exit(main())
