"""ARP situations (RFC 826, RFC 1122 2.3.2, RFC 5227), one test each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet
from test_net_harness import (
    BCAST_MAC,
    OTHER_IP,
    OUR_IP,
    OUR_MAC,
    PEER_IP,
    PEER_MAC,
    Harness,
    ipb,
    macb,
)

from ustack.net.arp import ArpTable


@pytest.fixture
def h() -> Iterator[Harness]:
    with Harness(arp=False) as harness:
        yield harness


def arp_in(
    op: int,
    *,
    psrc: str = PEER_IP,
    pdst: str = OUR_IP,
    hwsrc: str = PEER_MAC,
    eth_dst: str = BCAST_MAC,
    hwdst: str = "00:00:00:00:00:00",
) -> Packet:
    pkt: Packet = Ether(src=hwsrc, dst=eth_dst) / ARP(
        op=op, hwsrc=hwsrc, psrc=psrc, hwdst=hwdst, pdst=pdst
    )
    return pkt


def send_udp(h: Harness, dst: str = PEER_IP, payload: bytes = b"data") -> None:
    s = h.stack.udp_socket()
    s.sendto(payload, (dst, 9))
    h.poll()


def arp_requests(frames: list[Packet]) -> list[Packet]:
    return [f for f in frames if ARP in f and f[ARP].op == 1]


def test_gratuitous_arp_on_first_poll() -> None:
    """RFC 5227 2.3: on start the host announces its address (spa = tpa = ours)."""
    with Harness(arp=False, start=False) as h:
        h.poll()
        frames = h.recv()
    assert len(frames) == 1
    f = frames[0]
    assert f.dst == BCAST_MAC and f.src == OUR_MAC
    a = f[ARP]
    assert (a.op, a.psrc, a.pdst, a.hwsrc) == (1, OUR_IP, OUR_IP, OUR_MAC)
    assert len(bytes(f)) == 60  # padded to the Ethernet minimum


def test_request_for_our_ip_is_answered_with_our_mac(h: Harness) -> None:
    """RFC 826 "Packet reception": we are the target of a request -> reply."""
    h.send(arp_in(1))
    frames = h.recv()
    assert len(frames) == 1
    f = frames[0]
    assert f.dst == PEER_MAC and f.src == OUR_MAC
    a = f[ARP]
    assert a.op == 2
    assert (a.hwsrc, a.psrc, a.hwdst, a.pdst) == (OUR_MAC, OUR_IP, PEER_MAC, PEER_IP)
    assert h.stack.counters.ArpInRequests == 1 and h.stack.counters.ArpOutReplies == 1


def test_request_answered_learns_the_sender(h: Harness) -> None:
    """RFC 826: the target adds the sender's <ip, mac> before replying, so the
    next datagram to it needs no resolution."""
    h.send(arp_in(1))
    h.recv()
    send_udp(h)
    frames = h.recv()
    assert len(frames) == 1 and UDP in frames[0]
    assert frames[0].dst == PEER_MAC


def test_request_for_another_ip_is_ignored_and_not_learned(h: Harness) -> None:
    """RFC 826: not the target -> no reply, and no new entry ("merge" only)."""
    h.send(arp_in(1, pdst=OTHER_IP))
    assert h.recv() == []
    assert ipb(PEER_IP) not in h.iface.arp.entries
    send_udp(h)
    reqs = arp_requests(h.recv())
    assert len(reqs) == 1 and reqs[0].dst == BCAST_MAC  # still unresolved


def test_resolution_queues_then_sends_after_reply(h: Harness) -> None:
    """RFC 826 / RFC 1122 2.3.2.2: the packet waits for the reply, then goes out."""
    send_udp(h, payload=b"first")
    send_udp(h, payload=b"second")
    frames = h.recv()
    assert len(frames) == 1  # one request, both datagrams queued
    req = frames[0]
    assert req.dst == BCAST_MAC and req[ARP].op == 1
    assert (req[ARP].pdst, req[ARP].psrc, req[ARP].hwsrc) == (PEER_IP, OUR_IP, OUR_MAC)
    h.send(arp_in(2, eth_dst=OUR_MAC, hwdst=OUR_MAC))
    frames = h.recv()
    assert [bytes(f[UDP].payload) for f in frames] == [b"first", b"second"]
    assert all(f.dst == PEER_MAC and f.src == OUR_MAC for f in frames)
    # The retry timer was cancelled: nothing more is sent later.
    h.advance(5.0)
    assert h.recv() == []
    assert h.stack.counters.ArpResolveFailed == 0


def test_unanswered_resolution_retries_each_second_three_times_then_fails(h: Harness) -> None:
    """RFC 1122 2.3.2.1: at most one request per second per destination; after
    TRIES the queued packets are dropped and counted."""
    h.advance(0.5)
    before = h.stack.counters.ArpOutRequests  # the gratuitous ARP is one
    send_udp(h)
    send_udp(h)
    sent_at = []
    for _ in range(40):  # 4 s in 0.1 s steps
        if arp_requests(h.recv()):
            sent_at.append(round(h.now, 1))
        h.advance(0.1)
    assert sent_at == [0.5, 1.5, 2.5]
    c = h.stack.counters
    assert c.ArpOutRequests - before == 3
    assert c.ArpResolveFailed == 1
    assert h.drops.get("arp_unresolved") == 2
    assert c.IpOutDiscards == 2


def test_after_failure_a_new_packet_starts_a_new_resolution(h: Harness) -> None:
    """A failed resolution leaves no state behind; the next send asks again."""
    send_udp(h)
    for _ in range(8):
        h.advance(0.5)
    assert h.stack.counters.ArpResolveFailed == 1
    h.recv()
    send_udp(h)
    assert len(arp_requests(h.recv())) == 1


def test_pending_queue_is_bounded_per_neighbour(h: Harness) -> None:
    """docs/architecture.md, principle 3: a bounded queue per unresolved neighbour, drops named.

    The bound is in bytes (Linux unres_qlen_bytes); each datagram here is a
    1000-byte frame, so exactly ``fit`` of them are kept.
    """
    frame_len = 14 + 20 + 8 + 958
    fit = ArpTable.QUEUE_BYTES_PER_NEIGHBOUR // frame_len
    n = fit + 5
    s = h.stack.udp_socket()
    for i in range(n):
        s.sendto(i.to_bytes(2, "big") + bytes(956), (PEER_IP, 9))
    h.poll()
    assert h.drops.get("arp_queue_full") == 5
    h.recv()
    h.send(arp_in(2, eth_dst=OUR_MAC, hwdst=OUR_MAC))
    got = [int.from_bytes(bytes(f[UDP].payload)[:2], "big") for f in h.recv()]
    assert got == list(range(fit))  # the first ones, in order


def test_conflicting_claim_of_our_address_is_not_cached(h: Harness) -> None:
    """RFC 5227 2.4: someone else's ARP with our address as sender is a conflict;
    it must not poison the cache (we would send to ourselves via them)."""
    h.send(arp_in(2, psrc=OUR_IP, pdst=OUR_IP, hwsrc="02:00:00:00:00:66"))
    h.send(arp_in(1, psrc=OUR_IP, pdst=OUR_IP, hwsrc="02:00:00:00:00:66"))
    assert h.drops.get("arp_address_conflict") == 2
    assert ipb(OUR_IP) not in h.iface.arp.entries
    assert h.recv() == []  # and no reply to the conflicting request


def test_entry_is_refreshed_by_unicast_request_after_reachable(h: Harness) -> None:
    """After REACHABLE the first use still sends (no delay) but probes the
    neighbour with a unicast request (Linux STALE -> PROBE, RFC 1122 2.3.2.1
    "unicast poll"); an answer keeps the entry beyond EXPIRE."""
    h.send(arp_in(1))  # learned at t=0
    h.recv()
    h.advance(ArpTable.REACHABLE + 1)
    send_udp(h)
    frames = h.recv()
    udp = [f for f in frames if UDP in f]
    reqs = arp_requests(frames)
    assert len(udp) == 1 and udp[0].dst == PEER_MAC
    assert len(reqs) == 1 and reqs[0].dst == PEER_MAC  # unicast, not broadcast
    assert reqs[0][ARP].pdst == PEER_IP
    # A second send within RETRY does not probe again.
    send_udp(h)
    assert arp_requests(h.recv()) == []
    h.send(arp_in(2, eth_dst=OUR_MAC, hwdst=OUR_MAC))  # the answer, at ~31 s
    h.advance(ArpTable.EXPIRE - ArpTable.REACHABLE + 5)  # past the original EXPIRE
    send_udp(h)
    frames = h.recv()
    assert len([f for f in frames if UDP in f]) == 1
    assert [f for f in arp_requests(frames) if f.dst == BCAST_MAC] == []


def test_fragments_take_the_neighbour_as_one_datagram(h: Harness) -> None:
    """The fragments of one datagram (RFC 791) meet the neighbour cache as the
    datagram would: unresolved, all wait for one broadcast request and leave
    in order with the reply; fresh, all leave with its MAC and nothing else;
    stale, all leave at once and one unicast request refreshes it."""
    big = bytes(4000)  # three fragments at MTU 1500
    send_udp(h, payload=big)
    frames = h.recv()
    assert len(arp_requests(frames)) == 1 and [f for f in frames if IP in f] == []
    h.send(arp_in(2, eth_dst=OUR_MAC, hwdst=OUR_MAC))
    frames = h.recv()
    assert [f[IP].frag * 8 for f in frames] == [0, 1480, 2960]
    assert all(f.dst == PEER_MAC for f in frames)
    send_udp(h, payload=big)  # fresh
    frames = h.recv()
    assert len(frames) == 3 and all(IP in f and f.dst == PEER_MAC for f in frames)
    h.advance(ArpTable.REACHABLE + 1)
    send_udp(h, payload=big)  # stale
    frames = h.recv()
    assert len([f for f in frames if IP in f and f.dst == PEER_MAC]) == 3
    (probe,) = arp_requests(frames)
    assert (probe.dst, probe[ARP].pdst) == (PEER_MAC, PEER_IP)


def test_entry_expires_after_expire_seconds(h: Harness) -> None:
    """An entry not confirmed for EXPIRE seconds is forgotten: the next datagram
    waits for a fresh broadcast resolution."""
    h.send(arp_in(1))
    h.recv()
    for _ in range(int(ArpTable.EXPIRE) + 11):  # housekeeping runs every 10 s
        h.advance(1.0)
    assert ipb(PEER_IP) not in h.iface.arp.entries
    send_udp(h)
    frames = h.recv()
    assert [f for f in frames if UDP in f] == []
    reqs = arp_requests(frames)
    assert len(reqs) == 1 and reqs[0].dst == BCAST_MAC


def test_reply_for_expired_unswept_entry_releases_queued_packets(h: Harness) -> None:
    """RFC 1122 2.3.2.2: a queued packet is sent once the address resolves."""
    h.advance(0.5)
    h.send(arp_in(1))  # learned at t=0.5, expires at EXPIRE + 0.5
    h.recv()
    h.advance(0.5)
    for _ in range(int(ArpTable.EXPIRE)):  # the sweep at t=EXPIRE misses it by 0.5 s
        h.advance(1.0)
    assert h.iface.arp.entries[ipb(PEER_IP)].expires <= h.now  # expired, still there
    send_udp(h, payload=b"queued")
    reqs = arp_requests(h.recv())
    assert len(reqs) == 1 and reqs[0].dst == BCAST_MAC
    h.send(arp_in(2, eth_dst=OUR_MAC, hwdst=OUR_MAC))
    frames = h.recv()
    assert [bytes(f[UDP].payload) for f in frames if UDP in f] == [b"queued"]


def test_announcement_from_neighbour_being_resolved_answers_us(h: Harness) -> None:
    """RFC 5227 2.3: a gratuitous ARP from the neighbour we are resolving is as
    good as a reply (and lets the queued packet go)."""
    send_udp(h, payload=b"q")
    h.recv()
    h.send(arp_in(1, psrc=PEER_IP, pdst=PEER_IP))
    frames = h.recv()
    assert [bytes(f[UDP].payload) for f in frames if UDP in f] == [b"q"]


def test_changed_mac_updates_existing_entry(h: Harness) -> None:
    """RFC 826 merge: an existing entry takes the sender MAC of any ARP packet,
    even one not addressed to us (the neighbour moved)."""
    h.send(arp_in(1))
    h.recv()
    new_mac = "02:00:00:00:00:99"
    h.send(arp_in(1, pdst=OTHER_IP, hwsrc=new_mac))
    assert h.recv() == []  # not for us: no reply
    send_udp(h)
    frames = h.recv()
    assert len(frames) == 1 and frames[0].dst == new_mac


def test_static_entry_stays_as_configured(h: Harness) -> None:
    """A static entry (``--arp``, tests) is configuration, as Linux's
    permanent neighbours: an ARP packet from that neighbour, with the same
    MAC or another, neither makes it expire nor changes it, and it is never
    probed."""
    h.iface.arp.add_static(ipb(PEER_IP), macb(PEER_MAC))
    h.send(arp_in(1))  # same MAC: answered, the entry untouched
    h.send(arp_in(2, hwsrc="02:00:00:00:00:99", eth_dst=OUR_MAC, hwdst=OUR_MAC))
    e = h.iface.arp.entries[ipb(PEER_IP)]
    assert (e.mac, e.expires, e.refresh_at) == (macb(PEER_MAC), float("inf"), float("inf"))
    h.recv()
    h.advance(ArpTable.EXPIRE + 1)
    send_udp(h)
    frames = h.recv()
    assert [f.dst for f in frames] == [PEER_MAC] and UDP in frames[0]


@pytest.mark.parametrize("mac", ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"])
def test_sender_mac_multicast_or_zero_is_dropped(h: Harness, mac: str) -> None:
    """A multicast, broadcast or zero hardware sender address is never a host's."""
    h.send(arp_in(1, hwsrc=mac))
    assert h.recv() == []
    assert h.drops.get("arp_bad_sender_mac") == 1
    assert ipb(PEER_IP) not in h.iface.arp.entries


def test_probe_for_our_address_is_answered_but_not_cached(h: Harness) -> None:
    """RFC 5227 2.1.1: probes carry sender IP 0.0.0.0 precisely so that they do
    not pollute caches; the owner still answers (2.1.1, 2.4)."""
    h.send(arp_in(1, psrc="0.0.0.0"))
    frames = h.recv()
    assert len(frames) == 1 and frames[0][ARP].op == 2
    assert frames[0][ARP].hwdst == PEER_MAC
    assert b"\x00\x00\x00\x00" not in h.iface.arp.entries


@pytest.mark.parametrize(
    "body,reason",
    [
        (b"", "arp_short"),
        (b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x00" * 19, "arp_short"),
        (
            bytes(ARP(op=1, psrc=PEER_IP, pdst=OUR_IP, hwsrc=PEER_MAC))[:6]
            + b"\x00\x03"
            + bytes(ARP(op=1, psrc=PEER_IP, pdst=OUR_IP, hwsrc=PEER_MAC))[8:],
            "arp_op",
        ),
        (b"\x00\x06" + bytes(ARP(psrc=PEER_IP, pdst=OUR_IP, hwsrc=PEER_MAC))[2:], "arp_format"),
        (
            bytes(ARP(psrc=PEER_IP, pdst=OUR_IP, hwsrc=PEER_MAC))[:2]
            + b"\x86\xdd"
            + bytes(ARP(psrc=PEER_IP, pdst=OUR_IP, hwsrc=PEER_MAC))[4:],
            "arp_format",
        ),
        (
            bytes(ARP(psrc=PEER_IP, pdst=OUR_IP, hwsrc=PEER_MAC))[:4]
            + b"\x08\x04"
            + bytes(ARP(psrc=PEER_IP, pdst=OUR_IP, hwsrc=PEER_MAC))[6:],
            "arp_format",
        ),
    ],
)
def test_malformed_arp_is_counted_never_raises(h: Harness, body: bytes, reason: str) -> None:
    """Bad input is a counted drop (docs/architecture.md, principle 3), never an exception."""
    frame = Ether(src=PEER_MAC, dst=BCAST_MAC, type=0x0806) / body
    h.send(bytes(frame))
    assert h.recv() == []
    assert h.drops.get(reason) == 1
    assert h.iface.arp.entries == {}


def test_arp_reply_padding_is_ignored(h: Harness) -> None:
    """Ethernet pads ARP to 60 bytes (46 of payload); trailing bytes are not ARP."""
    frame = bytes(arp_in(1)) + b"\xaa" * 18
    h.send(frame)
    frames = h.recv()
    assert len(frames) == 1 and frames[0][ARP].op == 2


def test_ip_datagram_does_not_teach_arp(h: Harness) -> None:
    """Only ARP fills the cache (RFC 826); an IP datagram's source MAC is not trusted."""
    h.send(Ether(src=PEER_MAC, dst=OUR_MAC) / IP(src=PEER_IP, dst=OUR_IP) / UDP(dport=7))
    h.recv()
    assert ipb(PEER_IP) not in h.iface.arp.entries


@pytest.mark.parametrize("op", [1, 2], ids=["request", "reply"])
@pytest.mark.parametrize("psrc", ["198.18.1.2", "10.0.0.1", "198.18.0.255"],
                         ids=["next-subnet", "far", "broadcast"])
def test_sender_off_the_subnet_is_neither_learned_nor_answered(h: Harness, op: int,
                                                               psrc: str) -> None:
    """A neighbour is on the interface's subnet (198.18.0.0/24 here): an ARP
    packet whose sender address is outside it (or is the subnet's broadcast)
    would plant an entry no honest exchange needs.  Dropped and counted."""
    h.send(arp_in(op, psrc=psrc, eth_dst=OUR_MAC if op == 2 else BCAST_MAC,
                  hwdst=OUR_MAC if op == 2 else "00:00:00:00:00:00"))
    assert h.recv() == []
    assert ipb(psrc) not in h.iface.arp.entries
    assert h.stack.counters.drops.get("arp_sender_off_link") == 1


def test_unsolicited_reply_makes_no_entry(h: Harness) -> None:
    """RFC 826 merge rule, as Linux with arp_accept=0: a reply nobody asked
    for creates no entry (it would let anyone on the link redirect our
    traffic before we ever resolve the address); counted."""
    h.send(arp_in(2, eth_dst=OUR_MAC, hwdst=OUR_MAC))
    assert ipb(PEER_IP) not in h.iface.arp.entries
    assert h.stack.counters.drops.get("arp_unsolicited_reply") == 1
    send_udp(h)
    reqs = arp_requests(h.recv())
    assert len(reqs) == 1 and reqs[0].dst == BCAST_MAC  # resolved the honest way


def test_unsolicited_reply_updates_an_existing_entry(h: Harness) -> None:
    """RFC 826 merge: an entry that exists takes the sender's new MAC from
    any packet, a reply nobody asked for included."""
    h.send(arp_in(1))
    h.recv()
    new_mac = "02:00:00:00:00:98"
    h.send(arp_in(2, hwsrc=new_mac, eth_dst=OUR_MAC, hwdst=OUR_MAC))
    assert h.iface.arp.entries[ipb(PEER_IP)].mac == macb(new_mac)
    assert "arp_unsolicited_reply" not in h.stack.counters.drops
