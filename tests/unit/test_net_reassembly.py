"""IPv4 reassembly situations (RFC 791, RFC 815 hole descriptors, RFC 1122 3.3.2)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from test_net_harness import (
    OTHER_IP,
    OUR_IP,
    OUR_MAC,
    PEER_IP,
    PEER_MAC,
    Harness,
    assert_accounted,
    assert_icmp_checksum,
    assert_ip_checksum,
)

from ustack.net.reassembly import Reassembler
from ustack.udp.socket import UdpSocket

PORT = 7


@pytest.fixture
def h() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


@pytest.fixture
def sock(h: Harness) -> UdpSocket:
    s = h.stack.udp_socket()
    s.bind(("0.0.0.0", PORT))
    return s


def udp_bytes(data: bytes, *, src: str = PEER_IP, dport: int = PORT) -> bytes:
    """A whole UDP datagram (header + data) with a checksum scapy computed."""
    return bytes(IP(src=src, dst=OUR_IP) / UDP(sport=1234, dport=dport) / data)[20:]


def frag(
    transport: bytes,
    off: int,
    end: int,
    *,
    more: bool,
    ident: int = 77,
    src: str = PEER_IP,
    proto: int = 17,
    data: bytes | None = None,
) -> Packet:
    """One fragment carrying ``transport[off:end]`` (or ``data`` instead)."""
    body = transport[off:end] if data is None else data
    pkt: Packet = (
        Ether(src=PEER_MAC, dst=OUR_MAC)
        / IP(src=src, dst=OUR_IP, id=ident, proto=proto, flags="MF" if more else 0, frag=off // 8)
        / Raw(body)
    )
    return pkt


def split(transport: bytes, size: int, **kw: object) -> list[Packet]:
    """Fragments of ``size`` bytes (a multiple of 8), in order."""
    out = []
    n = len(transport)
    for off in range(0, n, size):
        end = min(off + size, n)
        out.append(frag(transport, off, end, more=end < n, **kw))  # type: ignore[arg-type]
    return out


def evil_overlap(t: bytes) -> bytes:
    """Bytes for [496, 1496) that disagree with ``t`` on [496, 1000) only."""
    return b"\xee" * 504 + t[1000:1496]


def received(s: UdpSocket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(s.recv())
        except BlockingIOError:
            return out


@pytest.mark.parametrize("order", ["in_order", "reverse", "random1", "random2", "last_first"])
def test_fragments_in_any_order_reassemble(h: Harness, sock: UdpSocket, order: str) -> None:
    """RFC 815: the hole list does not care about arrival order."""
    data = os.urandom(4000)
    frags = split(udp_bytes(data), 200)
    if order == "reverse":
        frags.reverse()
    elif order.startswith("random"):
        random.Random(order).shuffle(frags)
    elif order == "last_first":
        frags = frags[-1:] + frags[:-1]
    for f in frags[:-1]:
        h.send(f)
        assert received(sock) == []
    h.send(frags[-1])
    assert received(sock) == [data]
    c = h.stack.counters
    assert (c.IpReasmReqds, c.IpReasmOKs, c.IpReasmFails) == (len(frags), 1, 0)
    assert h.stack.ipv4.reasm.memory == 0 and len(h.stack.ipv4.reasm) == 0
    assert_accounted(h.stack)


def test_duplicate_fragments_deliver_once(h: Harness, sock: UdpSocket) -> None:
    """A duplicated fragment fills no hole; the datagram is delivered once."""
    data = os.urandom(2992)
    frags = split(udp_bytes(data), 1000)
    assert len(frags) == 3
    h.send(frags[0], frags[0], frags[1], frags[0], frags[1], frags[2])
    assert received(sock) == [data]
    assert h.drops.get("reasm_duplicate") == 3
    assert_accounted(h.stack)


@pytest.mark.parametrize("evil", [True, False], ids=["other-bytes", "same-bytes"])
@pytest.mark.parametrize("evil_first", [False, True], ids=["overlap-second", "overlap-first"])
def test_overlap_discards_the_datagram(h: Harness, sock: UdpSocket, evil: bool,
                                       evil_first: bool) -> None:
    """Overlapping fragments (the Teardrop family, overlap evasion): a
    fragment that covers bytes received and bytes missing discards the whole
    datagram (RFC 5722's rule, as Linux does for IPv4), whichever comes
    first and even when the overlapping bytes agree; counted as Linux counts
    it (IpReasmFails, IpExtReasmOverlaps)."""
    data = os.urandom(2992)
    t = udp_bytes(data)
    honest = frag(t, 0, 1000, more=True)
    overlap = frag(t, 496, 1496, more=True, data=evil_overlap(t) if evil else None)
    h.send(*([overlap, honest] if evil_first else [honest, overlap]))
    c = h.stack.counters
    assert (c.IpReasmFails, c.IpExtReasmOverlaps) == (1, 1)
    assert h.drops.get("reasm_overlap") == 1
    assert len(h.stack.ipv4.reasm) == 0 and h.stack.ipv4.reasm.memory == 0
    # The rest cannot complete it: what came before the overlap is gone.
    h.send(frag(t, 1496, 2496, more=True), frag(t, 2496, len(t), more=False))
    assert received(sock) == []
    assert c.IpReasmOKs == 0 and len(h.stack.ipv4.reasm) == 1
    assert_accounted(h.stack)


def test_fragment_inside_received_data_is_a_duplicate(h: Harness, sock: UdpSocket) -> None:
    """A fragment all of whose bytes were received (inside a fragment, or
    across two that touch) is dropped alone, as Linux drops a duplicate
    (DUP_FRAG): it writes nothing, even with other bytes, and the datagram
    completes with the data first received."""
    data = os.urandom(2992)
    t = udp_bytes(data)
    h.send(frag(t, 0, 1000, more=True), frag(t, 1000, 2000, more=True))
    h.send(frag(t, 496, 1496, more=True, data=evil_overlap(t)))
    h.send(frag(t, 8, 80, more=True, data=b"\xee" * 72))
    assert h.drops.get("reasm_duplicate") == 2
    assert h.stack.counters.IpReasmFails == 0
    h.send(frag(t, 2000, len(t), more=False))
    assert received(sock) == [data]
    assert_accounted(h.stack)


def test_fragment_past_the_end_drops_the_datagram(h: Harness, sock: UdpSocket) -> None:
    """Once the last fragment fixed the length, data beyond it means the
    fragments disagree: the whole datagram is dropped (IpReasmFails)."""
    data = os.urandom(1992)
    t = udp_bytes(data)  # 2000 bytes
    h.send(frag(t, 1000, 2000, more=False))
    h.send(frag(t, 1496, 2496, more=True, data=b"\x00" * 1000))
    assert h.drops.get("reasm_past_end") == 1
    assert h.stack.counters.IpReasmFails == 1
    h.send(frag(t, 0, 1000, more=True))  # alone now: starts a new, incomplete datagram
    assert received(sock) == []
    assert len(h.stack.ipv4.reasm) == 1


@pytest.mark.parametrize(
    "first_end,second_end,second_more",
    [
        (2000, 2400, False),  # two different last fragments
        (2400, 2000, False),  # a middle fragment already reached past the new end
    ],
)
def test_inconsistent_end_drops_the_datagram(
    h: Harness, sock: UdpSocket, first_end: int, second_end: int, second_more: bool
) -> None:
    """Two claims about where the datagram ends cannot both be right."""
    t = udp_bytes(os.urandom(2392))  # 2400 bytes
    h.send(frag(t, first_end - 400, first_end, more=first_end == 2400))
    h.send(frag(t, second_end - 400, second_end, more=second_more))
    assert h.drops.get("reasm_inconsistent_end") == 1
    assert h.stack.counters.IpReasmFails == 1
    assert len(h.stack.ipv4.reasm) == 0 and h.stack.ipv4.reasm.memory == 0


def test_incomplete_datagram_times_out_after_30s(h: Harness, sock: UdpSocket) -> None:
    """RFC 1122 3.3.2: an incomplete datagram is discarded after a timeout
    (Linux: 30 s); late fragments then cannot complete it."""
    t = udp_bytes(os.urandom(2992))
    frags = split(t, 1000)
    h.send(frags[0], frags[1])
    h.advance(Reassembler.TIMEOUT - 0.5)
    assert len(h.stack.ipv4.reasm) == 1 and h.stack.counters.IpReasmTimeout == 0
    h.advance(0.6)
    assert h.stack.counters.IpReasmTimeout == 1
    assert h.stack.ipv4.reasm.memory == 0
    h.send(frags[2])
    assert received(sock) == []
    assert_accounted(h.stack)


def test_timeout_without_first_fragment_sends_no_icmp(h: Harness, sock: UdpSocket) -> None:
    """RFC 792 / RFC 1122 3.2.2: no Time Exceeded unless fragment zero arrived,
    and never an error about a non-initial fragment."""
    t = udp_bytes(os.urandom(2992))
    h.send(split(t, 1000)[1])
    h.advance(Reassembler.TIMEOUT + 1)
    assert h.stack.counters.IpReasmTimeout == 1
    assert h.recv() == []


def test_timeout_with_first_fragment_sends_time_exceeded(h: Harness, sock: UdpSocket) -> None:
    """RFC 1122 3.3.2 / RFC 792: SHOULD send Time Exceeded, code 1 (fragment
    reassembly time exceeded), when fragment zero is present; Linux does."""
    t = udp_bytes(os.urandom(2992))
    h.send(split(t, 1000)[0])
    h.advance(Reassembler.TIMEOUT + 1)
    (err,) = h.recv()
    assert (err[ICMP].type, err[ICMP].code) == (11, 1)


def test_non_multiple_of_8_middle_fragment_is_dropped(h: Harness, sock: UdpSocket) -> None:
    """RFC 791: every fragment but the last carries a multiple of 8 octets."""
    t = udp_bytes(os.urandom(2992))
    h.send(frag(t, 0, 1001, more=True))
    assert h.drops.get("reasm_bad_fragment_len") == 1
    assert h.stack.counters.IpReasmFails == 1
    h.send(frag(t, 1000, 2000, more=True), frag(t, 2000, 3000, more=False))
    assert received(sock) == []


def test_reassembled_datagram_over_65535_is_dropped(h: Harness, sock: UdpSocket) -> None:
    """RFC 791: a datagram is at most 65535 octets (the Ping of Death)."""
    h.send(frag(b"", 65528, 65528, more=False, data=b"\x00" * 16))
    assert h.drops.get("reasm_too_long") == 1
    assert len(h.stack.ipv4.reasm) == 0


def test_reassembled_65535_byte_datagram_is_delivered(h: Harness, sock: UdpSocket) -> None:
    """The largest legal datagram (65507 bytes of UDP data) is accepted."""
    data = os.urandom(65507)
    h.send(*split(udp_bytes(data), 1480))
    assert received(sock) == [data]


def test_flood_from_one_source_is_bounded_per_source(h: Harness, sock: UdpSocket) -> None:
    """Memory is bounded per source: incomplete datagrams reaching far into the
    offset space exhaust only their own source's share, and another source's
    datagram still reassembles."""
    far = frag(b"", 64000, 64000, more=True, data=b"\x00" * 8)
    for ident in range(40):
        far[IP].id = ident
        h.send(bytes(far))
    r = h.stack.ipv4.reasm
    assert r.memory <= Reassembler.MAX_PER_SOURCE
    assert h.drops.get("reasm_memory", 0) >= 40 - Reassembler.MAX_PER_SOURCE // 64008
    data = os.urandom(3000)
    h.send(*split(udp_bytes(data, src=OTHER_IP), 1480, src=OTHER_IP))
    assert received(sock) == [data]


def test_total_memory_is_bounded(h: Harness, sock: UdpSocket) -> None:
    """Memory is bounded in total (Linux ipfrag_high_thresh): sources together
    cannot make the reassembler hold more than MAX_TOTAL."""
    n_sources = Reassembler.MAX_TOTAL // Reassembler.MAX_PER_SOURCE + 2
    for s in range(n_sources):
        src = f"198.18.0.{10 + s}"
        for ident in range(Reassembler.MAX_PER_SOURCE // 64008 + 1):
            h.send(frag(b"", 64000, 64000, more=True, data=b"\x00" * 8, src=src, ident=ident))
            assert h.stack.ipv4.reasm.memory <= Reassembler.MAX_TOTAL
    assert h.drops.get("reasm_memory", 0) > 0
    h.advance(Reassembler.TIMEOUT + 1)  # and all of it comes back
    assert h.stack.ipv4.reasm.memory == 0


def test_flood_of_tiny_datagrams_from_one_source_does_not_block_others(
    h: Harness, sock: UdpSocket
) -> None:
    """A flood of incomplete datagrams from one source must not prevent another
    source's datagram from reassembling (docs/architecture.md, principle 3: bounded per source)."""
    tiny = frag(b"", 0, 0, more=True, data=b"\x00" * 8)
    flood = []
    for ident in range(Reassembler.MAX_DATAGRAMS + 100):
        tiny[IP].id = ident & 0xFFFF
        flood.append(bytes(tiny))
    h.send(*flood)
    data = os.urandom(3000)
    h.send(*split(udp_bytes(data, src=OTHER_IP), 1480, src=OTHER_IP))
    assert received(sock) == [data]


def test_fragments_of_different_datagrams_do_not_mix(h: Harness, sock: UdpSocket) -> None:
    """RFC 791: fragments belong together only when (src, dst, proto, ident) match."""
    a, b = os.urandom(2000), os.urandom(2000)
    fa = split(udp_bytes(a), 1000, ident=1)
    fb = split(udp_bytes(b), 1000, ident=2)
    fc = split(udp_bytes(b, src=OTHER_IP), 1000, ident=1, src=OTHER_IP)
    h.send(fa[0], fb[0], fc[0], fb[1], fc[1], fc[2], fa[1], fa[2], fb[2])
    assert sorted(received(sock)) == sorted([a, b, b])


def test_port_unreachable_for_reassembled_datagram_quotes_it_whole(h: Harness) -> None:
    """RFC 1122 3.2.2: the error is about the reassembled datagram (no error
    about a non-initial fragment is sent, but the datagram is one whole): the
    quote is an unfragmented header for the whole datagram + 8 bytes."""
    data = os.urandom(3000)
    t = udp_bytes(data, dport=9)
    h.send(*split(t, 1480))
    (err,) = h.recv()
    assert (err[ICMP].type, err[ICMP].code) == (3, 3)
    assert_ip_checksum(err)
    assert_icmp_checksum(err)
    q = err[IPerror]
    assert (q.src, q.dst, q.proto, q.frag, q.len) == (PEER_IP, OUR_IP, 17, 0, 20 + len(t))
    assert not q.flags.MF
    assert (err[UDPerror].sport, err[UDPerror].dport) == (1234, 9)
    quoted = bytes(err[ICMP].payload)
    assert quoted[20:28] == t[:8]
    fresh = IP(quoted[:20])
    del fresh.chksum
    assert IP(bytes(fresh)).chksum == q.chksum  # a valid header, not a stale one


def test_protocol_unreachable_for_reassembled_datagram(h: Harness) -> None:
    """RFC 1122 3.2.2.1: protocol unreachable for a (reassembled) datagram of an
    unknown protocol, and the stack keeps running."""
    t = os.urandom(2000)
    h.send(*split(t, 1480, proto=253))
    (err,) = h.recv()
    assert (err[ICMP].type, err[ICMP].code) == (3, 2)
    assert err[IPerror].proto == 253
