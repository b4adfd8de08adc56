"""Per-connection state made on first use (issue 12: memory per idle
connection): the loss-recovery and reassembly lists start as one empty list
shared by every connection, and a connection gets its own the first time it
stores something.  Over a lossy, reordering link every kind is used, and the
shared ones must still be empty afterwards (a connection that appended to a
shared list would hand its losses or blocks to every other connection); a
connection that never saw a loss keeps the shared ones, and RACK's record of
transmissions is the shared empty one again once everything is acknowledged."""

from __future__ import annotations

import contextlib
import os

from ustack.link.fault import FaultInjector, FaultSpec
from ustack.link.pipe import pipe_pair
from ustack.stack import Stack
from ustack.tcp import rack, reassembly, sack, undo
from ustack.tcp.socket import TcpSocket
from ustack.tcp.states import State

A_IP, B_IP = "198.18.0.1", "198.18.0.2"


def _shared_lists() -> list[int]:
    """How many items each shared empty list holds (all 0, always)."""
    return [len(rack._NO_RTX), len(rack._NO_LOST), len(rack._NO_SEQS), len(rack._NO_TIMES),
            len(sack._NO_BLOCKS), len(undo._NO_SENT), len(reassembly._NO_BLOCKS)]


class _Pair:
    def __init__(self, fault: str | None) -> None:
        a_dev, b_dev = pipe_pair(1500, queue_len=100_000)
        # Faults both ways: data to B is lost and reordered (B reassembles,
        # A recovers), and so are B's ACKs.
        dev_a = FaultInjector(a_dev, FaultSpec.parse(fault)) if fault else a_dev
        dev_b = FaultInjector(b_dev, FaultSpec.parse(fault)) if fault else b_dev
        self.a, self.b = Stack(), Stack()
        self.a.add_interface(dev_a, f"{A_IP}/24")
        self.b.add_interface(dev_b, f"{B_IP}/24")
        self.now = 0.0

    def step(self) -> None:
        self.now += 0.001
        self.a.poll(self.now)
        self.b.poll(self.now)

    def transfer(self, data: bytes) -> tuple[TcpSocket, TcpSocket, bytes]:
        lst = self.b.tcp_listen((B_IP, 80))
        c = self.a.tcp_connect((B_IP, 80))
        got = bytearray()
        off = 0
        server: TcpSocket | None = None
        for _ in range(200_000):
            if server is None and lst.accept_queue:
                server = lst.accept()
            if c.state is State.ESTABLISHED and off < len(data):
                with contextlib.suppress(BlockingIOError):
                    off += c.send(data[off:off + 65536])
            if server is not None:
                with contextlib.suppress(BlockingIOError):
                    got += server.recv(1 << 20)
                if len(got) == len(data):
                    break
            self.step()
        assert server is not None
        return c, server, bytes(got)


def test_lossy_transfer_uses_its_own_lists_and_leaves_the_shared_empty() -> None:
    data = os.urandom(2_000_000)
    pair = _Pair("loss=2%,reorder=3%,dup=1%,seed=7")
    c, server, got = pair.transfer(data)
    assert got == data
    ca = pair.a.counters
    # Every list was needed: losses marked and resent (RACK), SACK blocks
    # received (the scoreboard), out-of-order data held (reassembly), and a
    # reduction's retransmissions remembered (undo).
    assert ca.TcpRetransSegs > 0 and ca.TcpExtTCPSackRecovery > 0
    assert c.conn.rack.rtx is not rack._NO_RTX or c.conn.rack.lost is not rack._NO_LOST
    assert c.conn.sb._blocks is not sack._NO_BLOCKS
    assert c.conn.undo.sent is not undo._NO_SENT
    assert server.conn.rcvq.ooo._blocks is not reassembly._NO_BLOCKS
    assert _shared_lists() == [0] * 7


def test_a_connection_without_loss_keeps_the_shared_lists() -> None:
    pair = _Pair(None)
    c, server, got = pair.transfer(b"x" * 100_000)
    assert got == b"x" * 100_000
    for _ in range(200):  # the last (delayed) ACK
        pair.step()
    assert c.conn.snd_una == c.conn.snd_nxt
    for conn in (c.conn, server.conn):
        assert conn.rack.rtx is rack._NO_RTX and conn.rack.lost is rack._NO_LOST
        # Everything sent is acknowledged: the transmission runs are forgotten.
        assert conn.rack._times is rack._NO_TIMES and conn.rack._seqs is rack._NO_SEQS
        assert conn.sb._blocks is sack._NO_BLOCKS
        assert conn.undo.sent is undo._NO_SENT
        assert conn.rcvq.ooo._blocks is reassembly._NO_BLOCKS
