"""UDP datagram situations (RFC 768, RFC 1122 4.1): the receive and send paths."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from test_net_harness import (
    OTHER_IP,
    OUR_IP,
    OUR_MAC,
    PEER_IP,
    PEER_MAC,
    Harness,
    assert_accounted,
    assert_ip_checksum,
    assert_udp_checksum,
    ipb,
    multihomed,
)

from ustack.link.pipe import pipe_pair
from ustack.stack import Stack
from ustack.udp.socket import UdpSocket


@pytest.fixture
def h() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


def bound(h: Harness, port: int = 7) -> UdpSocket:
    s = h.stack.udp_socket()
    s.bind(("0.0.0.0", port))
    return s


def test_connected_socket_ignores_other_peers(h: Harness) -> None:
    """A connected socket only receives from its peer address and port (Linux
    udp4_lib_lookup scoring; RFC 1122 4.1.3.4 leaves filtering to the host)."""
    s = h.stack.udp_socket()
    s.bind(("0.0.0.0", 7))
    s.connect((PEER_IP, 5000))
    h.send(
        h.udp_in(b"wrong port", sport=5001),
        h.udp_in(b"wrong host", src=OTHER_IP, sport=5000),
        h.udp_in(b"right", sport=5000),
    )
    assert s.recvfrom() == (b"right", (PEER_IP, 5000))
    with pytest.raises(BlockingIOError):
        s.recv()
    assert h.stack.counters.UdpNoPorts == 2
    assert_accounted(h.stack)


def test_recvfrom_truncates_to_bufsize(h: Harness) -> None:
    """Like recvfrom(2) without MSG_TRUNC: the rest of the datagram is discarded."""
    s = bound(h)
    h.send(h.udp_in(b"0123456789"), h.udp_in(b"next"))
    assert s.recvfrom(4) == (b"0123", (PEER_IP, 40000))
    assert s.recv() == b"next"


def test_datagram_boundaries_are_kept(h: Harness) -> None:
    """RFC 768: UDP delivers datagrams, never merged or split, in arrival order."""
    s = bound(h)
    msgs = [b"", b"a", b"bb", os.urandom(1000)]
    h.send(*[h.udp_in(m) for m in msgs])
    assert [s.recv() for _ in msgs] == msgs


def test_rcvbuf_overflow_drops_and_counts(h: Harness) -> None:
    """A full receive buffer drops the datagram (UdpRcvbufErrors, like Linux
    SO_RCVBUF accounting); reading makes room again."""
    s = bound(h)
    s.rcvbuf = 2000  # each 500-byte datagram is charged 500 + overhead
    h.send(*[h.udp_in(bytes([i]) * 500) for i in range(10)])
    c = h.stack.counters
    kept = c.UdpInDatagrams
    assert 1 <= kept < 10
    assert c.UdpRcvbufErrors == 10 - kept and c.UdpInErrors == 10 - kept
    assert h.drops.get("udp_rcvbuf_full") == 10 - kept
    assert [s.recv()[0] for _ in range(kept)] == list(range(kept))  # the first ones
    h.send(h.udp_in(b"room again"))
    assert s.recv() == b"room again"
    assert_accounted(h.stack)


def test_bad_udp_checksum_is_dropped(h: Harness) -> None:
    """RFC 1122 4.1.3.4: a datagram with a bad checksum MUST be discarded
    silently (UdpInCsumErrors), also no port unreachable for it."""
    s = bound(h)
    for dport in (7, 9):  # open and closed port
        pkt = h.udp_in(b"checksummed", dport=dport)
        pkt[UDP].chksum = (IP(bytes(pkt[IP]))[UDP].chksum ^ 0x8000) & 0xFFFF
        h.send(pkt)
    with pytest.raises(BlockingIOError):
        s.recv()
    c = h.stack.counters
    assert (c.UdpInCsumErrors, c.UdpInErrors, c.UdpNoPorts) == (2, 2, 0)
    assert h.recv() == []


def test_checksum_zero_means_none(h: Harness) -> None:
    """RFC 768: a transmitted checksum of zero means the sender computed none."""
    s = bound(h)
    pkt = h.udp_in(b"no checksum")
    pkt[UDP].chksum = 0
    h.send(pkt)
    assert s.recv() == b"no checksum"
    assert h.stack.counters.UdpInCsumErrors == 0


def test_checksum_ffff_is_accepted_as_zero_sum(h: Harness) -> None:
    """RFC 768: a computed checksum of 0 is sent as 0xFFFF; receivers accept it."""
    s = bound(h)
    payload = zero_sum_payload(PEER_IP, OUR_IP, 40000, 7)
    pkt = h.udp_in(payload)
    assert IP(bytes(pkt[IP]))[UDP].chksum == 0xFFFF  # scapy agrees it is the case
    h.send(pkt)
    assert s.recv() == payload


def zero_sum_payload(src: str, dst: str, sport: int, dport: int) -> bytes:
    """Two bytes that make the UDP checksum computation come out as zero."""
    c0 = IP(bytes(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / b"\x00\x00"))[UDP].chksum
    s0 = ~c0 & 0xFFFF
    w = (-s0) % 0xFFFF
    return w.to_bytes(2, "big")


def test_sent_checksum_zero_is_sent_as_ffff(h: Harness) -> None:
    """RFC 768: "If the computed checksum is zero, it is transmitted as all ones"."""
    s = h.stack.udp_socket()
    s.bind(("0.0.0.0", 40000))
    s.sendto(zero_sum_payload(OUR_IP, PEER_IP, 40000, 7), (PEER_IP, 7))
    h.poll()
    (f,) = h.recv()
    assert f[UDP].chksum == 0xFFFF
    assert_udp_checksum(f)


@pytest.mark.parametrize("length,reason", [(7, "udp_length"), (200, "udp_length")])
def test_bad_udp_length_is_dropped(h: Harness, length: int, reason: str) -> None:
    """RFC 768: the length counts header and data; less than 8 or more than the
    IP payload is malformed."""
    bound(h)
    pkt = h.udp_in(b"abc")
    pkt[UDP].len = length
    pkt[UDP].chksum = 0
    h.send(pkt)
    assert h.drops.get(reason) == 1
    assert h.stack.counters.UdpInErrors == 1
    assert h.recv() == []


def test_bytes_after_udp_length_are_not_data(h: Harness) -> None:
    """RFC 768: the UDP length, not the IP length, says where the data ends."""
    s = bound(h)
    pkt = h.udp_in(b"abcTRAILER")
    pkt[UDP].len = 8 + 3
    pkt[UDP].chksum = 0
    h.send(pkt)
    assert s.recv() == b"abc"


def test_on_datagram_callback_gets_payload_and_sender(h: Harness) -> None:
    """The fast path: the callback runs from the receive path, nothing is queued."""
    s = bound(h)
    got: list[tuple[bytes, bytes, int]] = []
    s.on_datagram = lambda d, ip, port, _sum: got.append((d, ip, port))
    h.send(h.udp_in(b"cb", sport=1111))
    assert got == [(b"cb", ipb(PEER_IP), 1111)]
    with pytest.raises(BlockingIOError):
        s.recv()


@pytest.mark.parametrize("size", [0, 1, 2, 3, 100, 1471, 1472])
def test_sent_datagram_fields_and_checksums(h: Harness, size: int) -> None:
    """What we send parses in scapy with valid IP and UDP checksums (odd sizes
    exercise RFC 768's zero padding of the last octet)."""
    s = h.stack.udp_socket()
    s.bind(("0.0.0.0", 4321))
    data = os.urandom(size)
    s.sendto(data, (PEER_IP, 1234))
    h.poll()
    (f,) = h.recv()
    assert (f.src, f.dst, f.type) == (OUR_MAC, PEER_MAC, 0x0800)
    ip = f[IP]
    assert (ip.version, ip.ihl, ip.src, ip.dst, ip.proto, ip.ttl) == (4, 5, OUR_IP, PEER_IP, 17, 64)
    assert ip.len == 28 + size and not ip.flags.MF and ip.frag == 0
    assert (f[UDP].sport, f[UDP].dport, f[UDP].len) == (4321, 1234, 8 + size)
    assert bytes(f[UDP].payload) == data
    assert_ip_checksum(f)
    assert_udp_checksum(f)


def test_bound_address_is_the_source_on_a_multihomed_stack() -> None:
    """RFC 1122 4.1.3.5: an application bound to a specific local address
    sends with that address as the IP source."""
    with multihomed() as (stack, peer_a):
        stack.poll(0.0)
        s = stack.udp_socket()
        s.bind(("198.18.1.1", 7000))
        s.sendto(b"from the second address", (PEER_IP, 9))
        stack.poll(0.0)
        frames = [Ether(f) for f in peer_a.recv_batch(64, 0.0)]
        (f,) = [f for f in frames if UDP in f]
        assert f[IP].src == "198.18.1.1"
        assert_udp_checksum(f)


class TwoStacks:
    """Two full stacks over one pipe; ARP resolves normally."""

    def __init__(self) -> None:
        self.da, self.db = pipe_pair(queue_len=8192)
        self.a, self.b = Stack(), Stack()
        self.a.add_interface(self.da, f"{OUR_IP}/24")
        self.b.add_interface(self.db, f"{PEER_IP}/24")
        self.now = 0.0

    def step(self, n: int = 10) -> None:
        for _ in range(n):
            self.now += 0.001
            self.a.poll(self.now)
            self.b.poll(self.now)

    def close(self) -> None:
        self.a.close()
        self.b.close()


@pytest.fixture
def pair() -> Iterator[TwoStacks]:
    p = TwoStacks()
    try:
        yield p
    finally:
        p.close()


def test_payload_sizes_round_trip_between_two_stacks(pair: TwoStacks) -> None:
    """0, 1, 1472 (largest unfragmented), 1473 (smallest fragmented) and 65507
    (largest) byte payloads go to an echo service and come back intact."""
    echo = pair.b.udp_socket()
    echo.bind(("0.0.0.0", 7))
    echo.on_datagram = lambda d, ip, port, dsum: echo.send_raw(d, ip, port, dsum) and None
    c = pair.a.udp_socket()
    c.connect((PEER_IP, 7))
    for size in (0, 1, 1472, 1473, 65507):
        data = os.urandom(size)
        c.send(data)
        pair.step()
        assert c.recvfrom(70000) == (data, (PEER_IP, 7)), size
    ca, cb = pair.a.counters, pair.b.counters
    assert ca.UdpInDatagrams == cb.UdpInDatagrams == 5
    assert ca.UdpInCsumErrors == cb.UdpInCsumErrors == 0
    assert cb.IpReasmOKs == 2 and ca.IpReasmOKs == 2
    assert_accounted(pair.a)
    assert_accounted(pair.b)


def test_round_trip_of_many_datagrams_in_one_poll(pair: TwoStacks) -> None:
    """A batch bigger than one poll's BATCH is delivered completely and in order."""
    sink = pair.b.udp_socket()
    sink.bind(("0.0.0.0", 9))
    c = pair.a.udp_socket()
    c.connect((PEER_IP, 9))
    c.send(b"warm-up")  # resolve ARP first
    pair.step()
    assert sink.recv() == b"warm-up"
    for i in range(300):
        c.send(i.to_bytes(2, "big"))
    pair.step(20)
    got = []
    while True:
        try:
            got.append(int.from_bytes(sink.recv(), "big"))
        except BlockingIOError:
            break
    assert got == list(range(300))


def test_unreachable_port_between_two_stacks_refuses(pair: TwoStacks) -> None:
    """End to end: B answers port unreachable, A's connected socket sees ECONNREFUSED."""
    c = pair.a.udp_socket()
    c.connect((PEER_IP, 9999))
    c.send(b"hello?")
    pair.step()
    with pytest.raises(ConnectionRefusedError):
        c.recv()
    assert pair.b.counters.UdpNoPorts == 1
    assert pair.a.counters.IcmpInDestUnreachs == 1


def test_icmp_echo_between_two_stacks(pair: TwoStacks) -> None:
    """send_echo produces a request B answers; A counts the reply."""
    pair.a.icmp.send_echo(ipb(PEER_IP), 1, 1, b"ping" * 10)
    pair.step()
    assert pair.a.counters.IcmpInEchoReps == 1
    assert pair.b.counters.IcmpOutEchoReps == 1
