"""ustack.wire.udp against scapy and dpkt."""

from __future__ import annotations

import socket

import dpkt  # type: ignore[import-untyped]
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from ustack.wire import ParseError, checksum, ipv4, udp

SETTINGS = settings(max_examples=100, deadline=None)

addrs = st.binary(min_size=4, max_size=4)
ports = st.integers(0, 0xFFFF)
payloads = st.one_of(st.binary(max_size=300), st.integers(0, 2000).map(bytes))


def pseudo(src: bytes, dst: bytes, length: int) -> bytes:
    return src + dst + bytes([0, 17]) + length.to_bytes(2, "big")


@SETTINGS
@given(addrs, addrs, ports, ports, payloads)
@example(b"\x00" * 4, b"\x00" * 4, 0, 0, b"\xff\xda")  # computed checksum 0 -> 0xFFFF
def test_build_parses_in_scapy_and_dpkt(
    src: bytes, dst: bytes, sport: int, dport: int, pl: bytes
) -> None:
    dg = udp.build(src, dst, sport, dport, pl)
    assert len(dg) == 8 + len(pl)
    assert type(dg) is bytes
    for view in (bytearray(pl), memoryview(pl)):  # any buffer, the same datagram
        assert udp.build(src, dst, sport, dport, view) == dg
    csum = int.from_bytes(dg[6:8], "big")
    assert csum != 0  # RFC 768: zero is sent as all ones
    assert dpkt.in_cksum(pseudo(src, dst, len(dg)) + dg) == 0
    frame = ipv4.build(src, dst, ipv4.PROTO_UDP, dg)
    # scapy: same fields, and the checksum it computes itself is ours.
    s = IP(frame)
    u = s[UDP]
    assert (u.sport, u.dport, u.len) == (sport, dport, len(dg))
    assert bytes(u.payload) == pl
    del s[UDP].chksum
    assert IP(raw(s))[UDP].chksum == csum
    # dpkt: same fields, and its recomputed checksum is ours.
    d = dpkt.ip.IP(frame)
    du = d.data
    assert isinstance(du, dpkt.udp.UDP)
    assert (du.sport, du.dport, du.ulen, du.sum, bytes(du.data)) == (
        sport, dport, len(dg), csum, pl)
    du.sum = 0
    d.sum = 0
    assert dpkt.ip.IP(bytes(d)).data.sum == csum
    # And our own parser verifies it.
    assert udp.parse(dg, src, dst) == (sport, dport, len(dg), csum)


@SETTINGS
@given(addrs, addrs, ports, ports, payloads, st.integers(0, 8))
def test_pack_header_into_matches_build(
    src: bytes, dst: bytes, sport: int, dport: int, pl: bytes, off: int
) -> None:
    buf = bytearray(off + 8 + len(pl))
    udp.pack_header_into(buf, off, src, dst, sport, dport, pl)
    buf[off + 8 :] = pl
    assert bytes(buf[off:]) == udp.build(src, dst, sport, dport, pl)


@SETTINGS
@given(addrs, addrs, ports, ports, payloads)
def test_scapy_datagrams_parse(src: bytes, dst: bytes, sport: int, dport: int, pl: bytes) -> None:
    frame = raw(IP(src=socket.inet_ntoa(src), dst=socket.inet_ntoa(dst))
                / UDP(sport=sport, dport=dport) / Raw(pl))
    dg = memoryview(frame)[20:]
    h = udp.parse(dg, src, dst)
    assert (h.sport, h.dport, h.length) == (sport, dport, 8 + len(pl))
    assert h.checksum == IP(frame)[UDP].chksum
    assert bytes(dg[8 : h.length]) == pl


@SETTINGS
@given(addrs, addrs, ports, ports, st.binary(min_size=1, max_size=100), st.data())
def test_corruption_detected(
    src: bytes, dst: bytes, sport: int, dport: int, pl: bytes, data: st.DataObject
) -> None:
    dg = bytearray(udp.build(src, dst, sport, dport, pl))
    i = data.draw(st.integers(8, len(dg) - 1))
    bit = data.draw(st.integers(0, 7))
    dg[i] ^= 1 << bit
    with pytest.raises(ParseError) as e:
        udp.parse(dg, src, dst)
    assert e.value.reason == "udp_checksum"
    assert udp.parse(dg).sport == sport  # no addresses: not verified


def test_zero_checksum_means_none() -> None:
    dg = bytearray(udp.build(b"\xc6\x12\x00\x01", b"\xc6\x12\x00\x02", 1, 2, b"abc"))
    dg[6:8] = b"\x00\x00"
    dg[9] ^= 0xFF  # corrupt payload: still accepted, RFC 768 "no checksum"
    assert udp.parse(dg, b"\xc6\x12\x00\x01", b"\xc6\x12\x00\x02").checksum == 0


def test_length_field_shorter_than_data() -> None:
    src, dst = b"\xc6\x12\x00\x01", b"\xc6\x12\x00\x02"
    dg = udp.build(src, dst, 1, 2, b"hello")
    h = udp.parse(dg + b"\x00\x00\x00", src, dst)  # checksum covers `length` bytes
    assert h.length == 13


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00" * 7, "udp_short"),
        (b"\x00\x01\x00\x02\x00\x07\x00\x00", "udp_length"),
        (b"\x00\x01\x00\x02\x00\x09\x00\x00", "udp_length"),
        (b"\x00\x01\x00\x02\x00\x08\x12\x34", "udp_checksum"),
    ],
)
def test_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as e:
        udp.parse(data, b"\xc6\x12\x00\x01", b"\xc6\x12\x00\x02")
    assert e.value.reason == reason


@SETTINGS
@given(addrs, addrs, ports, ports, payloads)
def test_parse_sum_gives_the_payload_sum_only_when_it_verified(
    src: bytes, dst: bytes, sport: int, dport: int, pl: bytes
) -> None:
    """The receive path's parse: the payload's sum (sum_mod) as a by-product
    of a verified checksum; -1 when the kernel vouched for the frame or the
    sender sent no checksum, and then a wrong checksum is not seen."""
    dg = udp.build(src, dst, sport, dport, pl)
    want = (sport, dport, len(dg), int.from_bytes(dg[6:8], "big"))
    assert udp.parse_sum(dg, src, dst) == (*want, checksum.sum_mod(pl))
    assert udp.parse_sum(dg + b"pad", src, dst) == (*want, checksum.sum_mod(pl))
    bad = bytearray(dg)
    bad[6] ^= 0x01
    with pytest.raises(ParseError, match="udp_checksum"):
        udp.parse_sum(bad, src, dst)
    assert udp.parse_sum(bad, src, dst, 1)[4] == -1
    bad[6:8] = b"\x00\x00"
    assert udp.parse_sum(bad, src, dst)[3:] == (0, -1)
