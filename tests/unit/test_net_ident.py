"""IPv4 Identification per destination (RFC 6864, RFC 7739).

One global counter lets anyone who exchanges datagrams with the host count
the datagrams it sends to others (the idle scan, RFC 7739 3.1).  Each
destination draws from its own counter (a table of counters chosen by a
keyed hash, as Linux's ip_idents), each started at random.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from test_net_harness import OUR_IP, OUR_MAC, PEER_IP, PEER_MAC, Harness, ipb, macb

from ustack.stack import Stack


@pytest.fixture
def h() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


def _slot(stack: Stack, addr: str) -> int:
    return hash(ipb(addr)) & (len(stack.ipv4.idents) - 1)


def _ping_id(h: Harness, seq: int) -> int:
    h.send(Ether(src=PEER_MAC, dst=OUR_MAC) / IP(src=PEER_IP, dst=OUR_IP)
           / ICMP(type=8, id=1, seq=seq) / b"probe")
    (reply,) = [f for f in h.recv() if ICMP in f]
    return int(reply[IP].id)


def test_datagrams_to_others_do_not_move_the_id_a_prober_sees(h: Harness) -> None:
    """The idle scan's probe: the ID in our replies to the prober goes up by
    one per reply, however many datagrams we send to other hosts between."""
    others = [f"198.18.0.{i}" for i in range(10, 60)]
    others = [a for a in others if _slot(h.stack, a) != _slot(h.stack, PEER_IP)][:8]
    for a in others:
        h.iface.arp.add_static(ipb(a), macb("02:00:00:00:00:77"))
    s = h.stack.udp_socket()
    first = _ping_id(h, 1)
    for a in others:
        for _ in range(5):
            s.sendto(b"x", (a, 9))
    h.poll()
    sent = [f for f in h.recv() if UDP in f]
    assert len(sent) == 40
    assert _ping_id(h, 2) == (first + 1) & 0xFFFF  # a global counter: first + 41
    # Each destination's own IDs are consecutive.
    for a in others:
        ids = [int(f[IP].id) for f in sent if f[IP].dst == a]
        assert ids == [(ids[0] + k) & 0xFFFF for k in range(5)]


def test_counters_start_at_random() -> None:
    """Two stacks do not start a destination's counter at the same place
    (RFC 7739 5: an ID an attacker can predict is a side channel too)."""
    with Harness() as h1, Harness() as h2:
        starts = {_ping_id(h1, 1), _ping_id(h2, 1)}
        starts |= {h1.stack.ipv4.idents[0], h1.stack.ipv4.idents[1]}
    assert len(starts) >= 3
