"""A deterministic bulk-transfer simulation: two ustack Stacks, one bottleneck.

Each stack's device is ``Shaper(FaultInjector(pipe, loss on send))``: what a
stack sends waits in a drop-tail queue, is serialised at RATE, travels DELAY,
and may then be lost at random (seeded).  Data (A to B) and ACKs (B to A)
both cross a shaper and both can be lost.

Time is simulated and event driven: after every poll the clock jumps to the
earliest deadline either stack has (a TCP timer, a frame leaving a shaper),
so an idle RTO costs no CPU and a 10 % loss run is as cheap as a clean one.
Between jumps the two stacks and the application are run until nothing moves
at the current instant: the application reads and writes as soon as it can,
as a real one blocked in select() would.

Everything that could differ between runs is pinned: the ISN secret, the
``random`` module (the layer draws ephemeral ports and timestamp offsets
from it), the MACs, the fault seeds.  Same inputs, same table.

Run ``python3 tests/sim/goodput_sim.py`` to print the table.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from ustack.link.fault import FaultInjector, FaultSpec
from ustack.link.pipe import PipeDevice, pipe_pair
from ustack.link.shaper import ETHERNET_OVERHEAD, Shaper, ShaperSpec
from ustack.stack import Stack
from ustack.tcp.isn import IsnGenerator
from ustack.tcp.socket import TcpSocket
from ustack.tcp.states import State

A_IP, B_IP = "198.18.0.1", "198.18.0.2"
A_MAC, B_MAC = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
PORT = 5001

RATE = 100e6 / 8  # 100 Mbit/s
DELAY = 0.005  # one way; RTT 10 ms plus serialisation
QUEUE = 128 * 1024  # about one bandwidth-delay product (125 kB)

LOSSES = (0.0, 0.01, 0.05, 0.10)
BUFFERS = (64 * 1024, 256 * 1024, 1024 * 1024)
NBYTES = 8_000_000

MAX_SAME_INSTANT = 100_000  # iterations without the clock moving: a livelock


@dataclass(frozen=True, slots=True)
class Result:
    loss: float
    buf: int
    nbytes: int
    seconds: float  # simulated, from the first send() to the last byte read
    retransmits: int  # the sender's retransmitted segments
    random_lost: int  # frames the fault injectors dropped (both directions)
    tail_drops: int  # frames the shapers dropped (both directions)
    segs_out: int  # segments the sender transmitted

    @property
    def goodput(self) -> float:
        """Application bytes per simulated second, in MB/s (10^6 bytes)."""
        return self.nbytes / self.seconds / 1e6


class SimNet:
    """A and B over a shaped, lossy pipe, with an event-driven fake clock."""

    def __init__(self, loss: float, buf: int, seed: int) -> None:
        # The layer draws its first ephemeral port and each connection's
        # timestamp offset from ``random``: pin it before the stacks exist.
        random.seed(seed)
        self.pipes: tuple[PipeDevice, PipeDevice] = pipe_pair(
            queue_len=100_000, names=("sim-a", "sim-b"))
        shape = ShaperSpec(rate=RATE, delay=DELAY, queue=QUEUE, overhead=ETHERNET_OVERHEAD)
        self.faults = tuple(
            FaultInjector(p, FaultSpec(loss=loss, seed=seed * 2 + i, direction="tx"))
            for i, p in enumerate(self.pipes))
        self.shapers = tuple(Shaper(f, shape) for f in self.faults)
        self.a, self.b = Stack(), Stack()
        for stack, dev, ip, mac, secret in (
                (self.a, self.shapers[0], A_IP, A_MAC, b"sim-isn-secret-a"),
                (self.b, self.shapers[1], B_IP, B_MAC, b"sim-isn-secret-b")):
            stack.add_interface(dev, f"{ip}/24", mac=mac)
            stack.tcp.isn = IsnGenerator(secret=secret)
            stack.tcp.config.rcvbuf = buf
            stack.tcp.config.rcvbuf_max = 0  # (the buffer of the table: not autotuned)
            stack.tcp.config.sndbuf = buf
            stack.tcp.config.sndbuf_max = 0  # (nor this one)
        self.now = 0.0

    def settle(self) -> None:
        """Run both stacks at ``now`` until no frame is waiting in a pipe."""
        a, b = self.a, self.b
        pa, pb = self.pipes
        for _ in range(MAX_SAME_INSTANT):
            a.poll(self.now)
            b.poll(self.now)
            if not (pa.queued() or pb.queued() or a.tcp.dirty or b.tcp.dirty):
                return
        raise AssertionError(f"livelock at t={self.now}")

    def advance(self) -> None:
        """Move the clock to the next deadline of either stack."""
        times = [t for t in (self.a.next_deadline(), self.b.next_deadline()) if t is not None]
        if not times:
            raise AssertionError(f"nothing left to happen at t={self.now}: stalled")
        t = min(times)
        if t > self.now:
            self.now = t

    def connect(self) -> tuple[TcpSocket, TcpSocket]:
        listener = self.b.tcp_listen(("0.0.0.0", PORT))
        client = self.a.tcp_connect((B_IP, PORT))
        end = self.now + 30.0
        while True:
            self.settle()
            if listener.accept_queue and client.state is State.ESTABLISHED:
                return client, listener.accept()
            if self.now > end:
                raise AssertionError("handshake did not complete")
            self.advance()

    def dropped(self) -> tuple[int, int]:
        """(frames lost at random, frames dropped at a shaper's tail)."""
        lost = sum(f.stats().get("fault_tx_lost", 0) for f in self.faults)
        return lost, sum(s.dropped for s in self.shapers)


def bulk(net: SimNet, src: TcpSocket, dst: TcpSocket, nbytes: int,
         limit: float = 600.0, watch: Callable[[], None] | None = None) -> float:
    """Move ``nbytes`` from src to dst; the simulated seconds it took.

    ``watch`` is called after every round of the stacks, for tests that look
    at a connection's state at each instant.
    """
    data = memoryview(bytes(nbytes))
    off = 0
    got = 0
    start = net.now
    end = start + limit
    same = 0
    while got < nbytes:
        moved = False
        if off < nbytes:
            with contextlib.suppress(BlockingIOError):
                off += src.send(data[off:off + 262_144])
                moved = True
        with contextlib.suppress(BlockingIOError):
            n = len(dst.recv(1 << 20))
            if n == 0:
                raise AssertionError(f"EOF after {got} of {nbytes} bytes")
            got += n
            moved = True
        net.settle()
        if watch is not None:
            watch()
        if moved and same < MAX_SAME_INSTANT:
            same += 1
            continue  # the application acted: let the stacks answer at once
        same = 0
        if net.now > end:
            raise AssertionError(f"transfer stalled at {got} of {nbytes} bytes")
        net.advance()
    return net.now - start


def run_cell(loss: float, buf: int, nbytes: int = NBYTES) -> Result:
    # One seed per cell, so that adding a cell never changes another.
    seed = round(loss * 1000) * 100_000 + buf // 1024
    net = SimNet(loss, buf, seed)
    client, server = net.connect()
    seconds = bulk(net, client, server, nbytes)
    lost, tail = net.dropped()
    conn = client.conn
    return Result(loss, buf, nbytes, seconds, conn.total_retransmits, lost, tail, conn.segs_out)


def table(results: list[Result]) -> str:
    r0 = results[0]
    lines = [
        f"# ustack goodput: {r0.nbytes} bytes A->B, bottleneck {RATE * 8 / 1e6:g} Mbit/s, "
        f"{DELAY * 1e3:g} ms one way, drop-tail queue {QUEUE} B,",
        "# seeded random loss on every frame in both directions (data and ACKs).",
        "# MB/s = 10^6 application bytes per simulated second; retrans = sender's",
        "# retransmitted segments; lost/taildrop = frames dropped at random/by the queue.",
        f"{'loss':>5} {'buffer':>7} {'MB/s':>6} {'seconds':>8} {'segs':>6} {'retrans':>7} "
        f"{'lost':>5} {'taildrop':>8}",
    ]
    for r in results:
        lines.append(
            f"{r.loss * 100:>4g}% {r.buf // 1024:>6}K {r.goodput:>6.2f} {r.seconds:>8.3f} "
            f"{r.segs_out:>6} {r.retransmits:>7} {r.random_lost:>5} {r.tail_drops:>8}")
    return "\n".join(lines) + "\n"


def run_grid(nbytes: int = NBYTES) -> str:
    return table([run_cell(loss, buf, nbytes) for loss in LOSSES for buf in BUFFERS])


if __name__ == "__main__":
    import sys
    import time

    t0 = time.perf_counter()
    for loss in LOSSES:
        for buf in BUFFERS:
            c0 = time.perf_counter()
            r = run_cell(loss, buf, int(sys.argv[1]) if len(sys.argv) > 1 else NBYTES)
            print(table([r]).splitlines()[-1], f"  [{time.perf_counter() - c0:.1f} s cpu]",
                  flush=True)
    print(f"total {time.perf_counter() - t0:.1f} s")
