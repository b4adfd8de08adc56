"""The impairment relay between two kernel namespaces (ustack_testbed.relay).

Without faults it is a transparent bridge (ping, a TCP transfer); with a
seeded spec its counters move and the same seed makes the same decisions on
the same frames; TCP through 3 % loss (and some duplication, corruption and
reordering) still delivers every byte intact.  Each test takes about a second.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from ustack_testbed import Netns, RelayTopology, Testbed, relay_topology

pytestmark = pytest.mark.root

ETH_P_EXP = 0x88B5  # IEEE 802 local experimental: the kernels ignore it
PORT = 5201


@pytest.fixture
def topo(testbed: Testbed) -> Iterator[RelayTopology]:
    yield relay_topology(testbed)


def tcp_transfer(topo: RelayTopology, data: bytes, timeout: float = 20.0) -> bytes:
    """Kernel to kernel, left to right, through the relay: what arrived."""
    server = topo.right_ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    client = topo.left_ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    got = bytearray()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(timeout)
                while chunk := conn.recv(1 << 16):
                    got.extend(chunk)
        except BaseException as exc:
            errors.append(exc)

    with server, client:
        server.settimeout(timeout)
        server.bind((topo.right_ip, PORT))
        server.listen(1)
        thread = threading.Thread(target=serve)
        thread.start()
        client.settimeout(timeout)
        client.connect((topo.right_ip, PORT))
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        thread.join(timeout + 5)
    assert not thread.is_alive() and not errors, errors
    return bytes(got)


def test_without_faults_ping_and_tcp_pass_and_frames_are_forwarded(
    topo: RelayTopology,
) -> None:
    data = os.urandom(1 << 20)
    with topo.start_relay("", seconds=60) as relay:
        topo.left_ns.run(["ping", "-c", "3", "-i", "0.05", "-W", "2", topo.right_ip])
        got = tcp_transfer(topo, data)
        c = relay.stop()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert c["l2r_forwarded"] == c["l2r_received"] > (1 << 20) // 1500
    assert c["r2l_forwarded"] == c["r2l_received"] > 0
    assert c["l2r_lost"] == c["r2l_lost"] == c["l2r_tx_full"] == 0


def raw_socket(ns: Netns, iface: str) -> socket.socket:
    s = ns.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_EXP))
    s.bind((iface, ETH_P_EXP))
    s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE: hold them all
    return s


def through_relay(
    topo: RelayTopology, spec: str, n: int = 300
) -> tuple[list[bytes], dict[str, int]]:
    """``n`` numbered frames from left to right through a relay with ``spec``:
    the frames that arrived, in order, and the relay's counters."""
    tx = raw_socket(topo.left_ns, topo.left_if)
    rx = raw_socket(topo.right_ns, topo.right_if)
    got: list[bytes] = []
    with tx, rx, topo.start_relay(spec, seconds=30) as relay:
        head = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + ETH_P_EXP.to_bytes(2, "big")
        for i in range(n):
            tx.send(head + i.to_bytes(4, "big") * 25)
            if i % 50 == 49:
                time.sleep(0.002)  # well inside the relay's ring
        rx.settimeout(0.5)
        try:
            while True:
                got.append(rx.recv(2048))
        except TimeoutError:
            pass
        counters = relay.stop()
    return got, counters


def test_seeded_faults_are_counted_and_the_same_seed_decides_the_same(
    topo: RelayTopology,
) -> None:
    spec = "loss=5%,dup=5%,corrupt=5%,seed=7"
    first, c = through_relay(topo, spec)
    for name in ("lost", "duplicated", "corrupted"):
        assert c[f"l2r_{name}"] > 0, name
    assert len(first) == c["l2r_forwarded"] == 300 - c["l2r_lost"] + c["l2r_duplicated"]
    assert through_relay(topo, spec)[0] == first  # same frames, same content
    assert through_relay(topo, spec.replace("seed=7", "seed=8"))[0] != first


def test_tcp_through_three_percent_loss_arrives_intact(topo: RelayTopology) -> None:
    data = os.urandom(1 << 20)
    with topo.start_relay("loss=3%,dup=1%,corrupt=1%,reorder=1%,seed=3", seconds=60) as relay:
        got = tcp_transfer(topo, data, timeout=30)
        c = relay.stop()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert c["l2r_lost"] > 0 and c["l2r_corrupted"] > 0
