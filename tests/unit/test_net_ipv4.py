"""IPv4 input situations (RFC 791, RFC 1122 3.2.1), one test each."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror
from scapy.layers.l2 import Ether
from tcp_peer import verify_checksums
from test_net_harness import (
    BCAST_MAC,
    OUR_IP,
    OUR_MAC,
    PEER_IP,
    PEER_MAC,
    SUBNET_BCAST,
    Harness,
    RawDevice,
    assert_accounted,
    assert_icmp_checksum,
    assert_ip_checksum,
    macb,
    multihomed,
)

from ustack.net.host import RX_IP_BROADCAST, RX_LINK_BROADCAST
from ustack.net.ipv4 import CallbackProtocol
from ustack.stack import Stack
from ustack.udp.socket import UdpSocket


@pytest.fixture
def h() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


def bound(h: Harness, port: int = 7, ip: str = "0.0.0.0") -> UdpSocket:
    s = h.stack.udp_socket()
    s.bind((ip, port))
    return s


def test_valid_datagram_is_delivered(h: Harness) -> None:
    """The baseline every drop test below is measured against."""
    s = bound(h)
    h.send(h.udp_in(b"payload"))
    assert s.recvfrom() == (b"payload", (PEER_IP, 40000))
    assert h.stack.counters.IpInDelivers == 1
    assert_accounted(h.stack)


def test_bad_header_checksum_is_dropped(h: Harness) -> None:
    """RFC 791 / RFC 1122 3.2.1.2: a datagram whose header checksum fails MUST
    be silently discarded (IpInHdrErrors)."""
    s = bound(h)
    pkt = h.udp_in(b"x")
    pkt[IP].chksum = (IP(bytes(pkt[IP])).chksum + 1) & 0xFFFF
    h.send(pkt)
    with pytest.raises(BlockingIOError):
        s.recvfrom()
    assert h.stack.counters.IpInHdrErrors == 1
    assert h.drops.get("ipv4_checksum") == 1
    assert h.recv() == []
    assert_accounted(h.stack)


@pytest.mark.parametrize(
    "field,value,reason",
    [
        ("version", 6, "ipv4_version"),
        ("version", 0, "ipv4_version"),
        ("ihl", 4, "ipv4_header_len"),
        ("ihl", 0, "ipv4_header_len"),
        ("ihl", 15, "ipv4_short"),  # claims 60 header bytes the frame does not have
        ("len", 19, "ipv4_total_length"),
        ("len", 2000, "ipv4_total_length"),
    ],
)
def test_malformed_header_is_dropped(h: Harness, field: str, value: int, reason: str) -> None:
    """RFC 1122 3.2.1.1/3.2.1.2: a wrong version or impossible lengths -> silent
    discard, counted as IpInHdrErrors with the reason."""
    bound(h)
    pkt = h.udp_in(b"abc")
    pkt[IP].setfieldval(field, value)
    h.send(pkt)
    assert h.drops.get(reason) == 1, h.drops
    assert h.stack.counters.IpInHdrErrors == 1
    assert h.recv() == []
    assert_accounted(h.stack)


def test_datagram_for_another_address_is_dropped(h: Harness) -> None:
    """RFC 1122 3.2.1.3 / 3.3.1: a host does not forward; a unicast datagram
    for an address not ours is discarded (IpInAddrErrors), no ICMP error."""
    bound(h)
    h.send(h.udp_in(b"x", dst="198.18.0.77"))
    assert h.stack.counters.IpInAddrErrors == 1
    assert h.drops.get("ipv4_not_for_us") == 1
    assert h.recv() == []
    assert_accounted(h.stack)


def test_options_are_skipped_and_payload_delivered(h: Harness) -> None:
    """RFC 791 / RFC 1122 3.2.1.8: the payload starts at IHL*4; unknown options
    are ignored.  (Router Alert, a NOP and an unknown option, 12 bytes.)"""
    s = bound(h)
    opts = b"\x94\x04\x00\x00" + b"\x01" + b"\x9e\x03\x00" + b"\x00" * 4
    h.send(h.udp_in(b"with options", options=opts))
    assert s.recvfrom() == (b"with options", (PEER_IP, 40000))
    assert_accounted(h.stack)


def test_options_quoted_in_port_unreachable(h: Harness) -> None:
    """RFC 792: the error quotes the whole internet header (options included)
    and at least 64 bits of the data."""
    opts = b"\x01\x01\x01\x00"
    pkt = h.udp_in(b"0123456789", dport=9, options=opts)
    h.send(pkt)
    (err,) = h.recv()
    assert err[ICMP].type == 3 and err[ICMP].code == 3
    sent = bytes(pkt[IP])
    quote = bytes(err[ICMP].payload)
    assert quote[0] == 0x46  # IHL 6: the options are there
    assert len(quote) >= 24 + 8 and sent.startswith(quote)


def test_ethernet_padding_after_total_length_is_ignored(h: Harness) -> None:
    """RFC 894: frames are padded to 60 bytes; IP's total length says where the
    datagram ends and the padding is neither payload nor checksummed."""
    s = bound(h)
    frame = bytes(h.udp_in(b"z"))
    assert len(frame) == 43
    h.send(frame + b"\xa5" * (60 - len(frame)))
    assert s.recvfrom() == (b"z", (PEER_IP, 40000))
    assert h.stack.counters.UdpInCsumErrors == 0


def test_padding_not_quoted_in_error(h: Harness) -> None:
    """RFC 792/1812 4.3.2.3: the quote is of the datagram, not of link padding."""
    frame = bytes(h.udp_in(b"", dport=9))  # 42 bytes: 18 of padding follow
    h.send(frame + b"\xa5" * 18)
    (err,) = h.recv()
    assert bytes(err[ICMP].payload) == frame[14:]


def test_truncated_frames_of_every_length_never_raise() -> None:
    """Bad input is a counted drop, never an exception: every prefix 0..60 of a
    padded UDP frame and of an ARP request, through a device that does not
    filter runts."""
    full_udp = bytes(
        Ether(src=PEER_MAC, dst=OUR_MAC)
        / IP(src=PEER_IP, dst=OUR_IP)
        / UDP(sport=1, dport=7)
        / b"q"
    ).ljust(60, b"\x00")
    full_bcast = bytes(
        Ether(src=PEER_MAC, dst=BCAST_MAC)
        / IP(src=PEER_IP, dst=SUBNET_BCAST)
        / UDP(sport=1, dport=7)
        / b"q"
    ).ljust(60, b"\x00")
    dev = RawDevice()
    stack = Stack()
    stack.add_interface(dev, f"{OUR_IP}/24", mac=macb(OUR_MAC))
    s = stack.udp_socket()
    s.bind(("0.0.0.0", 7))
    stack.poll(0.0)
    delivered = 0
    for full in (full_udp, full_bcast):
        for n in range(61):
            dev.rx.append(full[:n])
            stack.poll(0.0)
            assert_accounted(stack)
            while True:
                try:
                    assert s.recv() == b"q"
                except BlockingIOError:
                    break
                delivered += 1
    # Only the prefixes that still hold the whole 29-byte datagram deliver it.
    assert delivered == 2 * (61 - 43)
    assert stack.counters.drops.get("eth_short", 0) > 0
    assert stack.counters.drops.get("ipv4_short", 0) > 0


@pytest.mark.parametrize(
    "src", ["0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255"]
)
def test_martian_source_is_dropped(h: Harness, src: str) -> None:
    """RFC 1122 3.2.1.3: a host MUST silently discard a datagram whose source
    is "this network" (0/8), multicast, class E or broadcast."""
    s = bound(h)
    h.send(h.udp_in(b"m", src=src))
    with pytest.raises(BlockingIOError):
        s.recv()
    assert h.stack.counters.IpInAddrErrors == 1
    assert h.drops.get("ipv4_martian_source") == 1
    assert h.recv() == []


@pytest.mark.parametrize("src", ["127.0.0.1", SUBNET_BCAST])
def test_loopback_or_directed_broadcast_source_is_dropped(h: Harness, src: str) -> None:
    """RFC 1122 3.2.1.3 (g): 127/8 MUST NOT appear outside a host; (d) a
    directed broadcast MUST NOT be a source; such datagrams MUST be discarded."""
    s = bound(h)
    h.send(h.udp_in(b"m", src=src))
    with pytest.raises(BlockingIOError):
        s.recv()
    assert h.drops.get("ipv4_martian_source") == 1


@pytest.mark.parametrize("dst,eth_dst", [(SUBNET_BCAST, BCAST_MAC), ("255.255.255.255", BCAST_MAC)])
def test_broadcast_datagram_is_delivered(h: Harness, dst: str, eth_dst: str) -> None:
    """RFC 1122 3.3.6: a host accepts limited and directed broadcasts."""
    s = bound(h)
    h.send(h.udp_in(b"all", dst=dst, eth_dst=eth_dst))
    assert s.recvfrom() == (b"all", (PEER_IP, 40000))


def test_broadcast_destination_travels_up_as_rx_flag(h: Harness) -> None:
    """IPv4 tells the protocol above that a datagram was sent to a broadcast
    address (RX_IP_BROADCAST), whatever the frame's MAC; a unicast datagram,
    or one to our address in a link-layer broadcast, does not carry it."""
    seen: list[tuple[bytes, int]] = []
    h.stack.ipv4.protocols[253] = CallbackProtocol(
        lambda iface, src, dst, payload, pkt, rx: seen.append((dst, rx)))
    for dst, eth_dst in [(OUR_IP, OUR_MAC), (SUBNET_BCAST, OUR_MAC),
                         ("255.255.255.255", BCAST_MAC), (OUR_IP, BCAST_MAC)]:
        h.send(Ether(src=PEER_MAC, dst=eth_dst) / IP(src=PEER_IP, dst=dst, proto=253) / b"x")
    assert [(socket.inet_ntoa(d), bool(rx & RX_IP_BROADCAST)) for d, rx in seen] == [
        (OUR_IP, False), (SUBNET_BCAST, True), ("255.255.255.255", True), (OUR_IP, False)]
    assert [bool(rx & RX_LINK_BROADCAST) for _, rx in seen] == [False, False, True, True]


def test_unknown_protocol_gets_protocol_unreachable(h: Harness) -> None:
    """RFC 1122 3.2.2.1 / RFC 792: an unknown transport protocol -> Destination
    Unreachable code 2, quoting the IP header and the first data bytes."""
    pkt = (
        Ether(src=PEER_MAC, dst=OUR_MAC)
        / IP(src=PEER_IP, dst=OUR_IP, proto=253)
        / (b"ABCDEFGHIJKLMNOP")
    )
    h.send(pkt)
    (err,) = h.recv()
    assert (err.src, err.dst) == (OUR_MAC, PEER_MAC)
    assert (err[IP].src, err[IP].dst, err[IP].proto) == (OUR_IP, PEER_IP, 1)
    assert (err[ICMP].type, err[ICMP].code) == (3, 2)
    assert_ip_checksum(err)
    assert_icmp_checksum(err)
    quote = bytes(err[ICMP].payload)
    assert quote == bytes(pkt[IP])  # short datagram: quoted whole
    assert err[IPerror].proto == 253
    c = h.stack.counters
    assert c.IpInUnknownProtos == 1 and c.IcmpOutDestUnreachs == 1
    assert_accounted(h.stack)


def test_unknown_protocol_to_broadcast_gets_no_error(h: Harness) -> None:
    """RFC 1122 3.2.2: no ICMP error about a datagram sent to a broadcast."""
    h.send(
        Ether(src=PEER_MAC, dst=BCAST_MAC)
        / IP(src=PEER_IP, dst=SUBNET_BCAST, proto=253)
        / b"12345678"
    )
    assert h.recv() == []
    assert h.stack.counters.IpInUnknownProtos == 1


@pytest.mark.parametrize(
    "eth_dst,reason",
    [
        ("02:00:00:00:00:99", "eth_not_for_us"),
        ("01:00:5e:00:00:01", "eth_multicast"),
    ],
)
def test_frame_for_another_mac_is_dropped(h: Harness, eth_dst: str, reason: str) -> None:
    """A frame not addressed to our MAC or broadcast is not ours (IEEE 802.3)."""
    bound(h)
    h.send(h.udp_in(b"x", eth_dst=eth_dst))
    assert h.drops.get(reason) == 1
    assert h.stack.counters.IpInReceives == 0


def test_unknown_ethertype_is_dropped(h: Harness) -> None:
    """An IPv6 (0x86dd) frame is counted, not parsed as IPv4."""
    h.send(bytes(Ether(src=PEER_MAC, dst=OUR_MAC, type=0x86DD)) + b"\x60" + b"\x00" * 45)
    assert h.drops.get("eth_unknown_type") == 1
    assert_accounted(h.stack)


def test_tcp_answers_from_the_address_it_was_sent_to_on_a_multihomed_stack() -> None:
    """RFC 1122 4.1.3.5 / 3.3.4.2: a SYN to our second address, arriving on
    the first interface, is answered (SYN-ACK from a listener, RST from a
    closed port) with that address as the IP source, not the outgoing
    interface's, and both checksums are over that source (the route
    lookup from a bound source, ``RouteTable.lookup(dst, src)``)."""
    with multihomed() as (stack, peer_a):
        stack.tcp_listen(("0.0.0.0", 80))
        stack.poll(0.0)
        peer_a.recv_batch(64, 0.0)
        syns = [Ether(src=PEER_MAC, dst=OUR_MAC) / IP(src=PEER_IP, dst="198.18.1.1")
                / TCP(sport=40000 + i, dport=dport, flags="S", seq=1000)
                for i, dport in enumerate((80, 81))]
        peer_a.send_batch([bytes(f) for f in syns], 0.0)
        stack.poll(0.0)
        frames = [Ether(f) for f in peer_a.recv_batch(64, 0.0)]
        got = sorted((f[TCP].dport, str(f[TCP].flags)) for f in frames if TCP in f)
        assert got == [(40000, "SA"), (40001, "RA")]
        for f in frames:
            assert f[IP].src == "198.18.1.1"
            verify_checksums(f)
